from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sandbox.modes import SandboxMode, mode_current, mode_set
from sandbox.services import sandbox_revoke


class Command(BaseCommand):
    help = (
        "Act on the local Amazon sandbox. `sandbox revoke SELLING_PARTNER_ID` revokes that "
        "seller's authorization, as removing the app in Seller Central would: its refresh token "
        "then gets invalid_grant and its access tokens 403. `sandbox mode [seed|amazon]` shows or "
        "sets how the sandbox plays Amazon."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        revoke = sub.add_parser("revoke", help="Revoke a seller's sandbox authorization.")
        revoke.add_argument("selling_partner_id")
        mode = sub.add_parser(
            "mode",
            help="Show or set the sandbox's mode.",
            description=(
                "seed: the scope model. The consent page offers the URL's `scope` as "
                "checkboxes, the token response echoes the approved scopes, SP-API refuses a path "
                "outside them. amazon: Amazon as it really behaves. The consent page lists the app's "
                "registered roles (Admin → Tenants → App roles) with no checkboxes and ignores `scope`, "
                "the token response names no scope, SP-API answers 403 Unauthorized for a path outside "
                "the app's roles. Kept in the database: every process sees it; `make run` starts in seed."
            ),
        )
        mode.add_argument("mode", nargs="?", choices=SandboxMode.values, help="The mode to set; omit to show the current one.")

    def handle(self, *args, **options):
        if not settings.SPAPI_SANDBOX:
            raise CommandError("The local sandbox is off (SPAPI_SANDBOX is not true).")
        if options["action"] == "mode":
            if options["mode"] is None:
                self.stdout.write(f"The sandbox is in {mode_current()} mode.")
                return
            self.stdout.write(self.style.SUCCESS(f"The sandbox is now in {mode_set(options['mode'])} mode."))
            return
        if options["action"] == "revoke":
            spid = options["selling_partner_id"]
            count = sandbox_revoke(selling_partner_id=spid)
            if not count:
                raise CommandError(f"No active sandbox authorization for {spid}.")
            self.stdout.write(self.style.SUCCESS(f"Revoked {count} sandbox authorization(s) of {spid}."))
