"""Template filters naming the SP-API roles behind a scope, for the hosted pages and the admin."""

from __future__ import annotations

from django import template

from sellers.roles import role_labels as _role_labels
from sellers.scopes import roles_for_scope

register = template.Library()


@register.filter
def scope_roles(scope: str) -> str:
    """`sellingpartnerapi::finance` -> `Finance and Accounting`: the roles that give it, joined by "or"."""
    return " or ".join(_role_labels(roles_for_scope(scope)))


@register.filter
def role_labels(roles: list[str]) -> str:
    """A tenant's `app_roles` as Amazon names them, in catalog order."""
    return ", ".join(_role_labels(roles or []))
