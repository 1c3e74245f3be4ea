"""Django's and django-q2's own admins, restricted to superusers.

Background tasks carry arguments that span tenants, and users are managed across tenants:
staff of a tenant see neither.
"""

from __future__ import annotations

# Registers django-q2's admins before they are restricted to superusers below, whatever the
# order of INSTALLED_APPS.
import django_q.admin  # noqa: F401
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django_q.models import Failure, OrmQ, Schedule, Success, Task


def _superuser_only(base):
    class SuperuserOnly(base):
        def has_module_permission(self, request):
            return request.user.is_active and request.user.is_superuser

        def has_view_permission(self, request, obj=None):
            return request.user.is_active and request.user.is_superuser

        def has_add_permission(self, request, *args):
            return request.user.is_active and request.user.is_superuser and super().has_add_permission(request, *args)

        def has_change_permission(self, request, obj=None):
            return request.user.is_active and request.user.is_superuser

        def has_delete_permission(self, request, obj=None):
            return request.user.is_active and request.user.is_superuser

    SuperuserOnly.__name__ = SuperuserOnly.__qualname__ = f"SuperuserOnly{base.__name__}"
    return SuperuserOnly


def _restrict_to_superusers(model) -> None:
    if admin.site.is_registered(model):
        model_admin = admin.site.get_model_admin(model)
        admin.site.unregister(model)
        admin.site.register(model, _superuser_only(type(model_admin)))


def _restrict_builtin_admins() -> None:
    for model in (Task, Success, Failure, Schedule, OrmQ, get_user_model(), Group):
        _restrict_to_superusers(model)


if not admin.site.is_registered(get_user_model()):
    admin.site.register(get_user_model(), UserAdmin)
if not admin.site.is_registered(Group):
    admin.site.register(Group, GroupAdmin)
_restrict_builtin_admins()
