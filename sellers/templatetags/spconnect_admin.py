"""Template tags of the admin index: the per-tenant dashboard."""

from __future__ import annotations

from django import template

from sellers.admin_dashboard import dashboards_for, recent_history
from sellers.tenancy import tenant_access

register = template.Library()


@register.simple_tag(takes_context=True)
def tenant_dashboards(context):
    """{"boards": [...], "visible": n, "recent": [events]} for the tenants the current user may see."""
    request = context.get("request")
    if request is None:
        return {"boards": [], "visible": 0, "recent": []}
    access = tenant_access(request.user)
    boards, visible = dashboards_for(access)
    return {"boards": boards, "visible": visible, "recent": recent_history(access) if boards else []}
