"""Admin HTML drawn on the server: bar charts (SVG), linked bar lists, status badges, scope
chips and summaries, and the one date format of the admin.

No JavaScript and no third-party assets: every text goes through format_html (escaped) and
colours come from CSS classes in static/admin_ext/admin.css.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from sellers.scopes import CATALOG, short_name

# The admin's one date format (UTC, like the server), used by every column and page.
WHEN_FORMAT = "%Y-%m-%d %H:%M"
_SCOPE_NAME = re.compile(r"sellingpartnerapi::[a-z_]+")


def when(value: datetime | None, *, date_only: bool = False) -> str:
    """`2026-12-03 09:15` (UTC), or `—`; with `date_only`, the same without the time."""
    if value is None:
        return "—"
    value = value.astimezone(UTC) if timezone.is_aware(value) else value
    return f"{value:%Y-%m-%d}" if date_only else f"{value:{WHEN_FORMAT}}"


def scope_label(scope: str) -> str:
    """`sellingpartnerapi::inventory` -> `Inventory` (the catalog's label), else the short name."""
    found = CATALOG.get(scope)
    return found.label if found is not None else short_name(scope)


def scope_labels_in(text: str) -> str:
    """Text (a history detail) with every raw scope name replaced by its human label."""
    return _SCOPE_NAME.sub(lambda m: scope_label(m.group(0)), text)


def svg_bars(
    rows: list[tuple[str, int, str]], *, title: str, maximum: int | None = None, suffix: str = ""
) -> SafeString:
    """A horizontal bar chart as inline SVG: one labelled bar per row, widths to scale.

    Every text goes through format_html (escaped); colours come from CSS classes.
    """
    label_w, bar_w, value_w, row_h = 150, 220, 70, 22
    width = label_w + bar_w + value_w
    height = row_h * len(rows) + 4
    top = maximum if maximum is not None else max([n for _, n, _ in rows] + [1])
    bars = []
    for i, (label, n, css) in enumerate(rows):
        y = 2 + i * row_h
        w = 0 if top <= 0 else round(bar_w * min(n, top) / top)
        bars.append(
            format_html(
                '<g class="{}"><text class="spc-label" x="{}" y="{}" text-anchor="end">{}</text>'
                '<rect class="spc-track" x="{}" y="{}" width="{}" height="{}" rx="3"></rect>'
                '<rect class="spc-bar" x="{}" y="{}" width="{}" height="{}" rx="3"><title>{}: {}</title></rect>'
                '<text class="spc-value" x="{}" y="{}">{}{}</text></g>',
                css,
                label_w - 8, y + 15, label,
                label_w, y + 3, bar_w, row_h - 6,
                label_w, y + 3, w, row_h - 6, label, n,
                label_w + bar_w + 6, y + 15, n, suffix,
            )
        )
    return format_html(
        '<svg class="spc-chart" role="img" viewBox="0 0 {} {}" width="{}" height="{}" '
        'xmlns="http://www.w3.org/2000/svg"><title>{}</title>{}</svg>',
        width, height, width, height, title, mark_safe("".join(bars)),
    )


def status_badge(status: str, label: str) -> SafeString:
    return format_html('<span class="spc-badge spc-badge-{}">{}</span>', status, label)


def scope_chips(granted: list[str], missing: list[str], *, confirmed: bool = True) -> SafeString:
    """Granted scopes as chips, then the missing required ones highlighted.

    Unconfirmed scopes (assumed from the app's registration) are drawn dashed.
    """
    css = "spc-chip" if confirmed else "spc-chip spc-chip-assumed"
    note = "" if confirmed else " (assumed: Amazon did not confirm)"
    chips = format_html_join(
        "", '<span class="{}" title="{}{}">{}</span>', ((css, s, note, short_name(s)) for s in granted)
    )
    missing_chips = format_html_join(
        "",
        '<span class="spc-chip spc-chip-missing" title="Required, not granted: {}">{}</span>',
        ((s, short_name(s)) for s in missing),
    )
    if not granted and not missing:
        return mark_safe('<span class="spc-muted">—</span>')
    return format_html("{}{}", chips, missing_chips)


def scope_summary(*, held: int, required: list[str], missing: list[str], connected: bool) -> SafeString:
    """One short line for the sellers list: `3/4 required`, then the missing ones named."""
    if not connected:
        return mark_safe('<span class="spc-muted">—</span>')
    if not required:
        return format_html("{} granted", held)
    have = len(required) - len(missing)
    if not missing:
        return format_html('<span class="spc-scopes-ok">{}/{} required</span>', have, len(required))
    return format_html(
        '<span class="spc-overdue">{}/{} required</span> <span class="spc-missing">missing {}</span>',
        have, len(required), ", ".join(scope_label(s) for s in missing),
    )


def link_bars(rows: list[tuple[str, int, str, str]], *, title: str, maximum: int | None = None, suffix: str = "") -> SafeString:
    """A bar list whose labels and counts link to the list they count: rows of (label, count,
    css class, url). A table with a small decorative SVG bar per row (no inline style)."""
    top = maximum if maximum is not None else max([n for _, n, _, _ in rows] + [1])
    bar_w = 160
    body = format_html_join(
        "",
        '<tr class="{}"><th scope="row"><a href="{}">{}</a></th>'
        '<td class="spc-bar-cell"><svg width="{}" height="12" aria-hidden="true" focusable="false">'
        '<rect class="spc-track" width="{}" height="12" rx="3"></rect>'
        '<rect class="spc-bar" width="{}" height="12" rx="3"></rect></svg></td>'
        '<td class="spc-num"><a href="{}" aria-label="{}: {}{}">{}{}</a></td></tr>',
        (
            (css, url, label, bar_w, bar_w, 0 if top <= 0 else round(bar_w * min(n, top) / top),
             url, label, n, suffix, n, suffix)
            for label, n, css, url in rows
        ),
    )
    return format_html('<table class="spc-bars"><caption class="spc-sr">{}</caption>{}</table>', title, body)
