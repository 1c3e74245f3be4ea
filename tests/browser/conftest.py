"""Playwright (sync API) driving Debian's Chromium against pytest-django's live server.

No browser is downloaded: the tests use /usr/bin/chromium (`apt-get install -y chromium`, which
.ci/run does when it is missing). Without it the tests are skipped with that reason, except when
SPCONNECT_REQUIRE_BROWSER is set (CI), where a missing browser is a failure.

Every page a test looks at is screenshotted under artifacts/browser/<test>/ (git-ignored); a
failing test names the screenshot of the page it failed on.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("SPCONNECT_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = ROOT / "artifacts" / "browser"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}


def _missing(what: str) -> None:
    if os.environ.get("SPCONNECT_REQUIRE_BROWSER"):
        pytest.fail(f"{what} (SPCONNECT_REQUIRE_BROWSER is set, so this is a failure, not a skip)")
    pytest.skip(what)


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        _missing(f"Chromium is not installed at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; Django's ORM refuses to run where
    # it sees one. The ORM calls here are plain synchronous test code, so lift the guard while the
    # browser is up, and only then.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Shots:
    """Numbered screenshots of one test, and the name of the last one."""

    def __init__(self, test_name: str):
        self.folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.png"):
            old.unlink()
        self.count = 0
        self.last: Path | None = None

    def take(self, page, name: str, *, full_page: bool = True) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        self.last = path
        return path

    def relative(self, path: Path | None) -> str:
        return str(path.relative_to(ROOT)) if path else "(none taken)"


@pytest.fixture
def shots(request) -> Shots:
    return Shots(request.node.name)


def _new_page(chromium, *, bypass_csp: bool):
    context = chromium.new_context(viewport=DESKTOP, bypass_csp=bypass_csp, locale="en-US")
    context.set_default_timeout(15_000)
    return context, context.new_page()


@pytest.fixture
def page(chromium, live_amazon):
    """A fresh browser profile. CSP is bypassed only so axe-core can be injected as a script
    tag; test_csp_in_browser.py walks the same pages with the policy enforced."""
    context, page = _new_page(chromium, bypass_csp=True)
    yield page
    context.close()


@pytest.fixture
def strict_page(chromium, live_amazon):
    """A browser profile that enforces the Content-Security-Policy as a seller's browser does."""
    context, page = _new_page(chromium, bypass_csp=False)
    yield page
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    shots: Shots | None = item.funcargs.get("shots")
    page = item.funcargs.get("page") or item.funcargs.get("strict_page")
    if shots is None:
        return
    lines = [f"last page screenshot: {shots.relative(shots.last)}"]
    if page is not None:
        try:
            failed = shots.take(page, "FAILED")
            lines.append(f"page at failure: {shots.relative(failed)} ({page.url})")
        except Exception as exc:  # noqa: BLE001 - the browser may be what failed; report, don't mask
            lines.append(f"no screenshot at failure: {type(exc).__name__}")
    report.sections.append(("screenshots", "\n".join(lines)))


def check_page(page, shots: Shots, name: str) -> None:
    """Screenshot the page, then: no serious or critical axe-core violation, and no horizontal
    scrolling on a 375 px wide screen."""
    shot = shots.take(page, name)
    if not AXE.exists():
        _missing(f"axe-core is not installed at {AXE.relative_to(ROOT)}: run `npm ci` (make test does)")
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))
            }));
        }"""
    )
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not serious, f"{name}: accessibility violations {serious} (screenshot {shots.relative(shot)})"

    page.set_viewport_size(PHONE)
    try:
        widths = page.evaluate("() => [document.documentElement.scrollWidth, document.body.scrollWidth]")
        phone_shot = shots.take(page, f"{name}-375px")
    finally:
        page.set_viewport_size(DESKTOP)
    assert max(widths) <= PHONE["width"], (
        f"{name}: {max(widths)} px wide on a {PHONE['width']} px screen, it scrolls sideways "
        f"(screenshot {shots.relative(phone_shot)})"
    )
