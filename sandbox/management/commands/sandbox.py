from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sandbox.services import sandbox_revoke


class Command(BaseCommand):
    help = (
        "Act on the local Amazon sandbox. `sandbox revoke SELLING_PARTNER_ID` revokes that "
        "seller's authorization, as removing the app in Seller Central would: its refresh token "
        "then gets invalid_grant and its access tokens 403."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        revoke = sub.add_parser("revoke", help="Revoke a seller's sandbox authorization.")
        revoke.add_argument("selling_partner_id")

    def handle(self, *args, **options):
        if not settings.SPAPI_SANDBOX:
            raise CommandError("The local sandbox is off (SPAPI_SANDBOX is not true).")
        if options["action"] == "revoke":
            spid = options["selling_partner_id"]
            count = sandbox_revoke(selling_partner_id=spid)
            if not count:
                raise CommandError(f"No active sandbox authorization for {spid}.")
            self.stdout.write(self.style.SUCCESS(f"Revoked {count} sandbox authorization(s) of {spid}."))
