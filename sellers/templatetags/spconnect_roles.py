"""Template filters naming the SP-API roles behind a scope, for the hosted pages and the admin."""

from __future__ import annotations

from django import template

from sellers.roles import role_labels
from sellers.scopes import roles_for_scope

register = template.Library()


@register.filter
def scope_roles(scope: str) -> str:
    """`sellingpartnerapi::finance` -> `Finance and Accounting`: the roles that give it, joined by "or"."""
    return " or ".join(role_labels(roles_for_scope(scope)))
