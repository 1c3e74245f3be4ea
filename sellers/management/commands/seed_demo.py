import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.urls import reverse

from sellers.models import ScopeRequirement, Tenant, TenantMembership
from sellers.roles import AppRole

DEMO_REQUIREMENTS = [
    ("sellingpartnerapi::orders", ScopeRequirement.Kind.REQUIRED, "To sync your orders into our fulfilment dashboard."),
    ("sellingpartnerapi::inventory", ScopeRequirement.Kind.REQUIRED, "To warn you before your FBA stock runs out."),
    ("sellingpartnerapi::reports", ScopeRequirement.Kind.OPTIONAL, "To build your monthly sales report."),
    ("sellingpartnerapi::finance", ScopeRequirement.Kind.OPTIONAL, "To reconcile settlements with your accounts."),
]

# The roles a real app for these requirements would be registered with: together they give
# orders, inventory, reports and finance (sellers.scopes.SCOPE_ROLES).
DEMO_ROLES = [AppRole.AMAZON_FULFILLMENT.value, AppRole.FINANCE_AND_ACCOUNTING.value, AppRole.INVENTORY_AND_ORDER_TRACKING.value]


class Command(BaseCommand):
    help = (
        "Create the demo tenant (slug `demo`), its scope requirements, its app's SP-API roles and a staff login. "
        "Idempotent: a second run changes nothing and prints no password. The redirect URI is "
        "built from SITE_URL."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo", help="Staff username (default: demo).")
        parser.add_argument("--reset-password", action="store_true", help="Set and print a new password for the staff user.")

    @transaction.atomic
    def handle(self, *args, **options):
        wanted_redirect = f"{settings.SITE_URL}{reverse('authflow:callback')}"
        tenant, created = Tenant.objects.get_or_create(
            slug="demo",
            defaults=dict(
                name="Demo Agency",
                application_id="amzn1.sellerapps.app.demo-0000-0000",
                client_id="amzn1.application-oa2-client.demo",
                client_secret=secrets.token_urlsafe(32),
                redirect_uri=wanted_redirect,
                registered_scopes=[s for s, _, _ in DEMO_REQUIREMENTS],
                app_roles=DEMO_ROLES,
            ),
        )
        if not tenant.app_roles:  # a demo tenant from before roles were recorded
            tenant.app_roles = DEMO_ROLES
            tenant.save(update_fields=["app_roles"])
        if tenant.redirect_uri != wanted_redirect:
            tenant.redirect_uri = wanted_redirect
            tenant.save(update_fields=["redirect_uri"])
        for scope, kind, reason in DEMO_REQUIREMENTS:
            ScopeRequirement.objects.get_or_create(tenant=tenant, scope=scope, defaults={"kind": kind, "reason": reason})

        User = get_user_model()
        user = User.objects.filter(username=options["username"]).first()
        password = None
        if user is None:
            password = secrets.token_urlsafe(12)
            user = User.objects.create_user(username=options["username"], password=password, is_staff=True)
        elif options["reset_password"]:
            password = secrets.token_urlsafe(12)
            user.set_password(password)
            user.save(update_fields=["password"])
        TenantMembership.objects.get_or_create(
            tenant=tenant, user=user, defaults={"role": TenantMembership.Role.OWNER}
        )

        self.stdout.write(f"Demo tenant {'created' if created else 'already present'}: {tenant.name} (slug demo).")
        if password:
            self.stdout.write(self.style.SUCCESS(
                f"Admin login: {settings.SITE_URL}/admin/  username: {user.username}  password: {password}"
            ))
            self.stdout.write("This password is shown once; `seed_demo --reset-password` sets a new one.")
        else:
            self.stdout.write(f"Admin user {user.username} already exists; its password is unchanged.")
