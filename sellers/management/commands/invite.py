from django.core.management.base import BaseCommand, CommandError

from sellers.models import Region
from sellers.services.invitations import invitation_create

from ._common import tenant_by_slug

# A link is a bearer credential for the consent flow: a year is already generous.
MAX_DAYS = 365


class Command(BaseCommand):
    help = (
        "Create a pending seller and an invitation link to the hosted onboarding page. "
        "The absolute URL is printed as the last line, so scripts can take `| tail -n1`."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="Tenant slug.")
        parser.add_argument("--name", required=True, help="The seller's name, shown on the hosted page.")
        parser.add_argument("--email", default="", help="Where re-authorization links will be sent.")
        parser.add_argument("--region", default=Region.NA, choices=Region.values, help="Amazon region (default: na).")
        parser.add_argument("--days", type=int, default=None, help="Link lifetime in days (default: SPCONNECT_INVITATION_TTL_DAYS, 7).")

    def handle(self, *args, **options):
        tenant = tenant_by_slug(options["tenant"])
        if not options["name"].strip():
            raise CommandError("--name must not be empty.")
        if options["days"] is not None and not (1 <= options["days"] <= MAX_DAYS):
            raise CommandError(f"--days must be between 1 and {MAX_DAYS}.")
        invitation = invitation_create(
            tenant=tenant,
            name=options["name"],
            email=options["email"],
            region=options["region"],
            actor="command:invite",
            ttl_days=options["days"],
        )
        self.stdout.write(
            f"Invited {invitation.seller.name} ({invitation.seller.get_region_display()}) to {tenant.name}; "
            f"the link is valid until {invitation.expires_at:%Y-%m-%d %H:%M} UTC."
        )
        self.stdout.write(invitation.url)
