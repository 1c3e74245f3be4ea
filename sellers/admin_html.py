"""Admin HTML drawn on the server: horizontal SVG bar charts, status badges and scope chips.

No JavaScript and no third-party assets: every text goes through format_html (escaped) and
colours come from CSS classes in static/admin_ext/admin.css.
"""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from sellers.scopes import short_name


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
