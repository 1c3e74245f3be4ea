#!/usr/bin/env python
"""Load benchmark; results go to docs/benchmarks.md, section "load".

Concurrent sellers (20 by default) each run the whole consent flow over HTTP: hosted page →
start → consent page → approve → callback → result. The app runs as in production: gunicorn
(gthread) with DEBUG off, PostgreSQL, Redis as cache (rate limits) and django-q2 broker, and a
qcluster. "Amazon" (the local sandbox's consent page and LWA token endpoint) runs in a second
gunicorn, as a separate service the way the real one is, so the app's workers never wait on
themselves. Every simulated seller comes from its own address through one trusted proxy
(X-Forwarded-For), so the per-address rate limit is exercised, not switched off.

Afterwards every grant is read back through the ORM: decrypted, and its refresh token checked
against the one the sandbox issued (by hash). Target: 0 errors, 0 lost grants.

It creates (and drops at the end) its own database, and stops every process it started; the
whole run is bounded by --max-seconds.

    .venv/bin/python bench/bench_load.py [--sellers 20] [--flows 200] [--web-workers 3]
        [--pg postgres://postgres@127.0.0.1:5432] [--db spc_load] [--redis redis://127.0.0.1:6379/4]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import requests

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]
PY = sys.executable

SCOPES = [
    ("sellingpartnerapi::orders", "required", "To sync your orders."),
    ("sellingpartnerapi::inventory", "required", "To warn before stock runs out."),
    ("sellingpartnerapi::reports", "optional", "To build a monthly report."),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --- Environment and processes ------------------------------------------------------------------


@dataclass
class Stack:
    app_port: int
    amazon_port: int
    env: dict[str, str]
    amazon_env: dict[str, str]
    static_root: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def app(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    @property
    def amazon(self) -> str:
        return f"http://127.0.0.1:{self.amazon_port}"


def make_stack(args) -> Stack:
    from cryptography.fernet import Fernet

    app_port, amazon_port = free_port(), free_port()
    static_root = Path(tempfile.mkdtemp(prefix="spc_load_static_"))
    app, amazon = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{amazon_port}"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "spconnect.settings",
        "SPCONNECT_ENV_FILE": "/nonexistent",
        # Production settings, except that this runs over plain HTTP on 127.0.0.1.
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "SECURE_HSTS_SECONDS": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SITE_URL": app,
        "DATABASE_URL": f"{args.pg.rstrip('/')}/{args.db}",
        "CONN_MAX_AGE": "60",
        "REDIS_URL": args.redis,
        "STATIC_ROOT": str(static_root),
        "LOG_LEVEL": "WARNING",
        "SPCONNECT_TRUSTED_PROXY_COUNT": "1",
        "SPAPI_CONSENT_HOST_NA": f"{amazon}/sandbox/na",
        "SPAPI_LWA_TOKEN_URL": f"{amazon}/sandbox/auth/o2/token",
        "SPAPI_API_HOST_NA": f"{amazon}/sandbox/spapi/na",
        "Q_WORKERS": "1",
    }
    amazon_env = {**env, "SPAPI_SANDBOX": "true", "SPAPI_SANDBOX_ALLOW_WITHOUT_DEBUG": "true"}
    return Stack(app_port, amazon_port, env, amazon_env, static_root)


def database_recreate(args) -> None:
    import psycopg

    with psycopg.connect(f"{args.pg.rstrip('/')}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{args.db}"')


def database_drop(args) -> None:
    import psycopg

    with psycopg.connect(f"{args.pg.rstrip('/')}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')


def manage(stack: Stack, *command: str) -> None:
    subprocess.run([PY, "manage.py", *command], cwd=ROOT, env=stack.env, check=True, timeout=300,
                   stdout=subprocess.DEVNULL)


def gunicorn_args(port: int, workers: int, threads: int) -> list[str]:
    import gunicorn

    extra = ["--no-control-socket"] if int(gunicorn.__version__.split(".")[0]) >= 24 else []
    return [PY, "-m", "gunicorn", "spconnect.wsgi:application", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--threads", str(threads), "--worker-class", "gthread",
            "--timeout", "60", "--backlog", "256", "--error-logfile", "-", *extra]


def spawn(stack: Stack, argv: list[str], env: dict, log: Path) -> None:
    # Own process group: stopping it stops its workers too, and nothing else.
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    stack.processes.append(process)


def stop_all(stack: Stack) -> None:
    for process in stack.processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for process in stack.processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def wait_until_up(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer 200 within {seconds:.0f} s; see the logs under {BENCH / 'out'}")


# --- Seeding and checking (the bench process uses the app's settings) --------------------------------


def django_setup(stack: Stack) -> None:
    os.environ.update(stack.env)
    import django

    django.setup()


def seed(flows: int) -> tuple[str, list[str]]:
    from sellers.models import ScopeRequirement, Tenant
    from sellers.services.invitations import invitation_create

    tenant = Tenant.objects.create(
        slug="load", name="Load Agency", application_id="amzn1.sellerapps.app.load",
        client_id="amzn1.application-oa2-client.load", client_secret=secrets.token_urlsafe(32),
        registered_scopes=[s for s, _, _ in SCOPES],
    )
    for scope, kind, reason in SCOPES:
        ScopeRequirement.objects.create(tenant=tenant, scope=scope, kind=kind, reason=reason)
    urls = [invitation_create(tenant=tenant, name=f"Load Seller {i:04d}").url for i in range(flows)]
    return tenant.slug, urls


def grants_check(spids: list[str]) -> tuple[int, list[str]]:
    """(grants read back intact, problems) for the flows that completed."""
    from django.db import connection

    from sandbox.models import SandboxAuthorization
    from sellers.models import Grant

    connection.close()
    issued = {a.selling_partner_id: a.refresh_token_hash for a in SandboxAuthorization.objects.filter(selling_partner_id__in=spids)}
    grants = {g.seller.selling_partner_id: g for g in Grant.objects.select_related("seller").filter(seller__selling_partner_id__in=spids)}
    problems, intact = [], 0
    for spid in spids:
        grant = grants.get(spid)
        if grant is None:
            problems.append(f"{spid}: no grant stored")
            continue
        try:
            refresh = grant.refresh_token  # decrypted on access
        except Exception as exc:  # noqa: BLE001 - any failure to read is what we count
            problems.append(f"{spid}: grant unreadable ({type(exc).__name__})")
            continue
        if grant.status != Grant.Status.ACTIVE or not refresh or hashlib.sha256(refresh.encode()).hexdigest() != issued.get(spid):
            problems.append(f"{spid}: grant does not hold the refresh token Amazon issued (status {grant.status})")
            continue
        intact += 1
    return intact, problems


# --- The sellers ------------------------------------------------------------------------------------


class FormReader(HTMLParser):
    def __init__(self):
        super().__init__()
        self.fields: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("name"):
            self.fields.append((a["name"], a.get("value") or "", a.get("type", "text")))


def form_fields(html: str) -> list[tuple[str, str, str]]:
    reader = FormReader()
    reader.feed(html)
    return reader.fields


@dataclass
class FlowResult:
    ok: bool
    seconds: float
    spid: str
    step: str = ""
    detail: str = ""
    requests: list[float] = field(default_factory=list)
    throttled: int = 0


def seller_flow(invite_url: str, n: int) -> FlowResult:
    spid = f"A1LOAD{n:06d}"
    browser = requests.Session()
    # One address per seller, as our proxy would report it.
    browser.headers["X-Forwarded-For"] = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
    timings: list[float] = []
    throttled = 0
    started = time.perf_counter()

    def call(step: str, method: str, url: str, expect: int, **kwargs) -> requests.Response:
        nonlocal throttled
        t0 = time.perf_counter()
        response = browser.request(method, url, allow_redirects=False, timeout=60, **kwargs)
        timings.append(time.perf_counter() - t0)
        if response.status_code == 429:
            throttled += 1
        if response.status_code != expect:
            title = re.search(r"<h1>(.*?)</h1>", response.text, re.S)
            raise FlowError(step, f"HTTP {response.status_code}" + (f" {title.group(1).strip()!r}" if title else ""))
        return response

    try:
        page = call("hosted page", "GET", invite_url, 200)
        csrf = next(v for name, v, _ in form_fields(page.text) if name == "csrfmiddlewaretoken")
        consent_url = call("start", "POST", invite_url + "start/", 302, data={"csrfmiddlewaretoken": csrf},
                           headers={"Origin": "{0.scheme}://{0.netloc}".format(urlparse(invite_url))}).headers["Location"]
        consent = call("consent page", "GET", consent_url, 200)
        data: dict[str, object] = {name: value for name, value, kind in form_fields(consent.text) if kind != "checkbox"}
        data["scope"] = [value for name, value, kind in form_fields(consent.text) if kind == "checkbox"]
        data["selling_partner_id"] = spid
        data["decision"] = "approve"
        callback_url = call("approve", "POST", consent_url.split("?")[0], 302, data=data).headers["Location"]
        result_url = call("callback", "GET", callback_url, 302).headers["Location"]
        result = call("result", "GET", urlparse(invite_url)._replace(path=result_url, query="").geturl()
                      if result_url.startswith("/") else result_url, 200)
        if "all set" not in result.text:
            raise FlowError("result", "the result page does not say the seller is connected")
    except FlowError as exc:
        return FlowResult(False, time.perf_counter() - started, spid, exc.step, exc.detail, timings, throttled)
    except requests.RequestException as exc:
        return FlowResult(False, time.perf_counter() - started, spid, "network", type(exc).__name__, timings, throttled)
    return FlowResult(True, time.perf_counter() - started, spid, requests=timings, throttled=throttled)


class FlowError(Exception):
    def __init__(self, step: str, detail: str):
        super().__init__(f"{step}: {detail}")
        self.step, self.detail = step, detail


def run_load(urls: list[str], sellers: int, deadline: float, *, first: int = 0) -> tuple[list[FlowResult], float, int]:
    """Run one flow per URL, `sellers` at a time; seller numbers (addresses, SPIDs) from `first`."""
    work: queue.Queue[tuple[int, str]] = queue.Queue()
    for n, url in enumerate(urls, start=first):
        work.put((n, url))
    results: list[FlowResult] = []
    lock = threading.Lock()

    def seller_loop() -> None:
        while time.monotonic() < deadline:
            try:
                n, url = work.get_nowait()
            except queue.Empty:
                return
            outcome = seller_flow(url, n)
            with lock:
                results.append(outcome)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=sellers) as pool:
        for _ in range(sellers):
            pool.submit(seller_loop)
    return results, time.perf_counter() - started, work.qsize()


# --- Main -------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sellers", type=int, default=20, help="concurrent sellers (default 20)")
    parser.add_argument("--flows", type=int, default=200, help="flows in total, one seller each (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="flows run first and not counted (default 10)")
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn workers for the app (default 3)")
    parser.add_argument("--web-threads", type=int, default=4, help="threads per app worker (default 4)")
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432"),
                        help="PostgreSQL server URL without database name")
    parser.add_argument("--db", default=os.environ.get("BENCH_DB", "spc_load"), help="database to create and drop (default spc_load)")
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4"))
    parser.add_argument("--max-seconds", type=float, default=300, help="stop starting flows after this long (default 300)")
    parser.add_argument("--no-write", action="store_true", help="print the figures, do not touch docs/benchmarks.md")
    args = parser.parse_args()

    out = BENCH / "out"
    out.mkdir(exist_ok=True)
    stack = make_stack(args)
    bench_started = time.monotonic()
    try:
        print(f"database {args.db}: recreating; app on {stack.app}, Amazon sandbox on {stack.amazon}")
        database_recreate(args)
        manage(stack, "migrate", "--noinput")
        manage(stack, "collectstatic", "--noinput")
        django_setup(stack)
        _, urls = seed(args.warmup + args.flows)

        spawn(stack, gunicorn_args(stack.amazon_port, 2, 8), stack.amazon_env, out / "load_amazon.log")
        spawn(stack, gunicorn_args(stack.app_port, args.web_workers, args.web_threads), stack.env, out / "load_web.log")
        spawn(stack, [PY, "manage.py", "qcluster"], stack.env, out / "load_worker.log")
        wait_until_up(f"{stack.app}/healthz")
        wait_until_up(f"{stack.amazon}/sandbox/")

        deadline = bench_started + args.max_seconds
        warm, _, _ = run_load(urls[: args.warmup], min(args.sellers, max(args.warmup, 1)), deadline)
        results, elapsed, not_started = run_load(urls[args.warmup:], args.sellers, deadline, first=args.warmup)
        completed = [r for r in results if r.ok]
        intact, problems = grants_check([r.spid for r in completed])
    finally:
        stop_all(stack)
        shutil.rmtree(stack.static_root, ignore_errors=True)
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001 - Django may never have been set up
            pass
        database_drop(args)

    errors = [r for r in results if not r.ok]
    flow_times = [r.seconds for r in completed]
    request_times = [t for r in results for t in r.requests]
    lost = len(completed) - intact
    by_step: dict[str, int] = {}
    for r in errors:
        by_step[f"{r.step} ({r.detail})"] = by_step.get(f"{r.step} ({r.detail})", 0) + 1
    throttled = sum(r.throttled for r in results)

    lines = [
        f"{args.sellers} concurrent sellers, {len(results)} consent flows (one new seller each, after "
        f"{len(warm)} warm-up flows): hosted page → start → consent page → approve → callback (code "
        "exchange at the sandbox's LWA over HTTP) → result page.",
        "",
        f"App: gunicorn gthread {args.web_workers} workers × {args.web_threads} threads, DEBUG off, PostgreSQL, Redis as "
        "cache and django-q2 broker, one qcluster, rate limit on (each seller its own address behind one trusted proxy). "
        "The Amazon sandbox runs in a second gunicorn (2 × 8), like an outside service. Client threads, both "
        "gunicorns, PostgreSQL and Redis all share this one machine, so the figures are a floor, not a ceiling.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| flows completed | {len(completed)} of {len(results)}"
        + (f" ({not_started} not started: time limit)" if not_started else "")
        + " |",
        f"| wall time | {elapsed:.1f} s |",
        f"| flows per second | {len(completed) / elapsed:.1f} |" if elapsed else "| flows per second | n/a |",
        f"| flow time p50 / p99 | {percentile(flow_times, 0.5) * 1000:.0f} ms / {percentile(flow_times, 0.99) * 1000:.0f} ms |",
        f"| HTTP request p50 / p99 (6 per flow) | {percentile(request_times, 0.5) * 1000:.0f} ms"
        f" / {percentile(request_times, 0.99) * 1000:.0f} ms |",
        f"| errors | {len(errors)}"
        + (" — " + ", ".join(f"{k}: {v}" for k, v in sorted(by_step.items())) if by_step else "")
        + " |",
        f"| answers 429 (rate limited) | {throttled} |",
        f"| grants read back intact (decrypted, refresh token = the one issued) | {intact} of {len(completed)} |",
        f"| lost grants | {lost} |",
        "",
        "Target: 0 errors, 0 lost grants. Run: `.venv/bin/python bench/bench_load.py` (needs PostgreSQL and Redis; "
        f"creates and drops the database `{args.db}`).",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    for problem in problems[:10]:
        print("  ", problem)
    if not args.no_write:
        from _report import write_section

        write_section("load", "## Load: consent flows on gunicorn + PostgreSQL + Redis\n\n" + markdown)
        print("written to docs/benchmarks.md (section load)")
    if errors or lost:
        sys.exit(1)


if __name__ == "__main__":
    main()
