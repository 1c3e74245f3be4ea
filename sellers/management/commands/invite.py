from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from sellers.models import Region, Seller
from sellers.services.invitations import invitation_create, reauthorization_link_get_or_create

from ._common import tenant_by_slug

# A link is a bearer credential for the consent flow: a year is already generous.
MAX_DAYS = 365


class Command(BaseCommand):
    help = (
        "Create a seller and an invitation link to the hosted onboarding page. "
        "The absolute URL is printed as the last line, so scripts can take `| tail -n1`."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="Tenant slug.")
        parser.add_argument("--name", required=True, help="The seller's name, shown on the hosted page.")
        parser.add_argument("--email", default="", help="Where re-authorization links will be sent.")
        parser.add_argument("--region", default=Region.NA, choices=Region.values, help="Amazon region (default: na).")
        parser.add_argument("--days", type=int, default=None, help="Link lifetime in days (default: SPCONNECT_INVITATION_TTL_DAYS, 7).")
        parser.add_argument(
            "--reuse",
            action="store_true",
            help="If the tenant already has a seller of this name, email and region, print its open link "
            "(a new one if it has none) instead of creating another seller. `make run` uses it for its demo seller.",
        )

    def handle(self, *args, **options):
        tenant = tenant_by_slug(options["tenant"])
        name, email = options["name"].strip(), options["email"].strip()
        if not name:
            raise CommandError("--name must not be empty.")
        if email:
            try:
                validate_email(email)
            except ValidationError:
                raise CommandError(f"--email {email!r} is not an email address.") from None
        if options["days"] is not None and not (1 <= options["days"] <= MAX_DAYS):
            raise CommandError(f"--days must be between 1 and {MAX_DAYS}.")
        existing = None
        if options["reuse"]:
            existing = (
                Seller.objects.filter(tenant=tenant, name=name, email__iexact=email, region=options["region"])
                .order_by("-pk")
                .first()
            )
        if existing is not None:
            invitation, created = reauthorization_link_get_or_create(
                seller=existing, actor="command:invite", ttl_days=options["days"]
            )
            self.stdout.write(
                f"{existing.name} is already a seller of {tenant.name} ({existing.get_status_display()}); "
                f"{'a new' if created else 'its'} link is valid until {invitation.expires_at:%Y-%m-%d %H:%M} UTC."
            )
            self.stdout.write(invitation.url)
            return
        invitation = invitation_create(
            tenant=tenant,
            name=name,
            email=email,
            region=options["region"],
            actor="command:invite",
            ttl_days=options["days"],
        )
        self.stdout.write(
            f"Invited {invitation.seller.name} ({invitation.seller.get_region_display()}) to {tenant.name}; "
            f"the link is valid until {invitation.expires_at:%Y-%m-%d %H:%M} UTC."
        )
        self.stdout.write(invitation.url)
