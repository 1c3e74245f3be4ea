"""The sandbox's two modes and what differs between them.

`seed` plays the scope model: the consent URL's `scope` is shown as checkboxes, the token
response echoes the approved scopes, SP-API gates calls on them. `amazon` plays Amazon as it
really is: the consent page lists the app's registered roles (no checkboxes, `scope` ignored),
the token response names no scope, SP-API gates calls on the roles the app had when the seller
consented (`sellers.scopes.PATH_FAMILIES`). The mode lives in the database so every web process
and management command sees the same one.
"""

from __future__ import annotations

from sellers.roles import ROLES, clean_roles, role_labels
from sellers.scopes import ANY_AUTHORIZED_SELLER, path_family

from .models import SandboxMode, SandboxState

__all__ = ["SandboxMode", "consent_roles", "mode_current", "mode_set", "spapi_refusal"]


def mode_current() -> str:
    """The sandbox's mode; `seed` until someone sets one."""
    mode = SandboxState.objects.filter(pk=1).values_list("mode", flat=True).first()
    return mode if mode in SandboxMode.values else SandboxMode.SEED


def mode_set(mode: str) -> str:
    """Set the mode (a SandboxMode value); returns it. ValueError for anything else."""
    if mode not in SandboxMode.values:
        raise ValueError(f"Unknown sandbox mode {mode!r}: use {' or '.join(SandboxMode.values)}.")
    SandboxState.objects.update_or_create(pk=1, defaults={"mode": mode})
    return mode


def consent_roles(roles: list[str]) -> list[dict[str, object]]:
    """The app's registered roles as the `amazon`-mode consent page lists them."""
    return [
        {"label": ROLES[r].label, "description": ROLES[r].description, "restricted": ROLES[r].restricted}
        for r in clean_roles(roles)
    ]


def spapi_refusal(*, mode: str, path: str, scopes: list[str], roles: list[str]) -> tuple[int, str] | None:
    """(status, details) when SP-API refuses this path to a token, else None.

    `seed`: the path's scope must be among the approved ones. `amazon`: one of the roles the app
    had when the seller consented must open the path. A path outside the map is not an operation
    the sandbox knows (404); a grantless one never takes a seller's token (403).
    """
    family = path_family(path)
    if family is None:
        return 404, "This is not an SP-API operation the sandbox knows."
    if family.grantless:
        return 403, "This grantless operation takes the app's client_credentials token, not a seller's."
    if mode == SandboxMode.AMAZON:
        if not family.roles & set(roles):
            needed = ", ".join(role_labels(family.roles))
            return 403, f"The application's roles do not open this operation ({family.api}); it needs one of: {needed}."
        return None
    if family.scope != ANY_AUTHORIZED_SELLER and family.scope not in scopes:
        return 403, f"The access token does not grant {family.scope}."
    return None
