"""Which tenants a staff user may see, and in which role: the one answer every admin page uses.

Every admin queryset, form choice, list filter, action and object URL is scoped through
`tenant_access(user)`. A tenant outside the user's access does not exist for them (404), so
nothing is learnt about other agencies from status codes either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Q, QuerySet

from sellers.models import Tenant, TenantMembership

Role = TenantMembership.Role

# Each role includes the ones below it: an owner may do what a manager may, and so on.
ROLE_RANK: dict[str, int] = {Role.VIEWER: 1, Role.MANAGER: 2, Role.OWNER: 3}

_CACHE_ATTR = "_spconnect_tenant_access"


@dataclass(frozen=True)
class TenantAccess:
    """A user's roles per tenant id. Superusers hold every tenant as owner."""

    is_superuser: bool = False
    roles: dict[int, str] = field(default_factory=dict)

    def role_for(self, tenant_id: int | None) -> str | None:
        if tenant_id is None:
            return None
        if self.is_superuser:
            return Role.OWNER
        return self.roles.get(tenant_id)

    def can(self, tenant_id: int | None, role: str = Role.VIEWER) -> bool:
        """True when the user holds `role` (or a higher one) in the tenant."""
        held = self.role_for(tenant_id)
        return held is not None and ROLE_RANK[held] >= ROLE_RANK[role]

    def can_anywhere(self, role: str = Role.VIEWER) -> bool:
        return self.is_superuser or any(ROLE_RANK[r] >= ROLE_RANK[role] for r in self.roles.values())

    def tenant_ids(self, role: str = Role.VIEWER) -> set[int] | None:
        """Ids of the tenants where the user holds `role`; None means every tenant (superuser)."""
        if self.is_superuser:
            return None
        return {tid for tid, r in self.roles.items() if ROLE_RANK[r] >= ROLE_RANK[role]}

    def scope(self, queryset: QuerySet, tenant_field: str = "tenant", role: str = Role.VIEWER) -> QuerySet:
        """`queryset` limited to rows of tenants where the user holds `role`."""
        ids = self.tenant_ids(role)
        if ids is None:
            return queryset
        # `tenant_field` is a path to the Tenant ("tenant", "seller__tenant") or "pk" on Tenant.
        return queryset.filter(**{f"{tenant_field}__in": sorted(ids)})

    def tenants(self, role: str = Role.VIEWER) -> QuerySet[Tenant]:
        return self.scope(Tenant.objects.all(), "pk", role)

    @property
    def is_multi_tenant(self) -> bool:
        return self.is_superuser or len(self.roles) > 1


NO_ACCESS = TenantAccess()


def tenant_access(user) -> TenantAccess:
    """The user's access, read once per user object (one query) and kept on it for the request.

    Inactive users, anonymous users and users who are not staff see nothing.
    """
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active or not user.is_staff:
        return NO_ACCESS
    cached = getattr(user, _CACHE_ATTR, None)
    if cached is not None:
        return cached
    if user.is_superuser:
        access = TenantAccess(is_superuser=True)
    else:
        roles = dict(TenantMembership.objects.filter(user=user).values_list("tenant_id", "role"))
        access = TenantAccess(roles={tid: role for tid, role in roles.items() if role in ROLE_RANK})
    setattr(user, _CACHE_ATTR, access)
    return access


def tenant_access_forget(user) -> None:
    """Drop the cached access (after memberships change within the same request)."""
    if hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)


def visible_users_q(access: TenantAccess, role: str = Role.OWNER) -> Q:
    """Users an owner may pick as members: members of their tenants and staff with no tenant yet.

    Members of other tenants only are never offered: their existence is another agency's business.
    Newcomers must be active staff (`is_staff`): membership is for admin users. Members already in
    the owner's tenants stay valid choices whatever their flags, or one deactivated colleague
    would make every later save of the tenant page fail.
    """
    if access.is_superuser:
        return Q()
    ids = sorted(access.tenant_ids(role) or ())
    newcomers = Q(is_staff=True, is_active=True, is_superuser=False, memberships__isnull=True)
    return Q(memberships__tenant_id__in=ids) | newcomers
