import getpass
import sys
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sellers.services.client_secrets import DEFAULT_PREVIOUS_VALID_DAYS, ClientSecretError, client_secret_install

from ._common import tenant_by_slug

# Amazon keeps a replaced secret working for days, not months; longer is a typo.
MAX_PREVIOUS_VALID_DAYS = 30


class Command(BaseCommand):
    stealth_options = ("stdin",)  # call_command(..., stdin=…) in tests and scripts
    help = (
        "Install a new LWA client secret for a tenant's app. The secret is read from standard input "
        "(never from arguments, which end up in shell history and process lists); on a terminal it "
        "is asked for without echo. The current secret becomes the previous one and is still "
        "accepted until --previous-valid-days have passed. Records SECRET_ROTATED; never prints the secret."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="Tenant slug.")
        parser.add_argument(
            "--previous-valid-days",
            type=float,
            default=DEFAULT_PREVIOUS_VALID_DAYS,
            help=f"How long the replaced secret is still tried on invalid_client (default: {DEFAULT_PREVIOUS_VALID_DAYS}; "
            "use Amazon's oldClientSecretExpiryTime if you know it).",
        )
        parser.add_argument("--expires-at", help="When Amazon expires the new secret (ISO 8601; default: in 180 days).")

    def _read_secret(self, stdin) -> str:
        if hasattr(stdin, "isatty") and stdin.isatty():
            return getpass.getpass("New LWA client secret (not echoed): ")
        lines = [line.strip() for line in stdin.read().splitlines() if line.strip()]
        if len(lines) > 1:
            raise CommandError("Standard input holds more than one line; give only the secret.")
        return lines[0] if lines else ""

    def handle(self, *args, **options):
        tenant = tenant_by_slug(options["tenant"])
        days = options["previous_valid_days"]
        if not (0 <= days <= MAX_PREVIOUS_VALID_DAYS):  # also refuses nan
            raise CommandError(f"--previous-valid-days must be between 0 and {MAX_PREVIOUS_VALID_DAYS}.")
        expires_at = None
        if options["expires_at"]:
            try:
                expires_at = parse_datetime(options["expires_at"])
            except ValueError:  # well-formed but impossible, e.g. 2026-02-30
                expires_at = None
            if expires_at is None:
                raise CommandError("--expires-at is not an ISO 8601 time, e.g. 2026-06-01T00:00:00Z.")
            if timezone.is_naive(expires_at):
                expires_at = timezone.make_aware(expires_at, timezone.get_default_timezone())
        secret = self._read_secret(options.get("stdin") or sys.stdin)
        try:
            changed = client_secret_install(
                tenant=tenant,
                secret=secret,
                expires_at=expires_at,
                previous_valid_until=timezone.now() + timedelta(days=days),
                actor="command:set_client_secret",
                source="set_client_secret",
            )
        except ClientSecretError as exc:
            raise CommandError(str(exc)) from None
        if not changed:
            self.stdout.write(f"That is already the current client secret of {tenant.name}; nothing changed.")
            return
        tenant.refresh_from_db()
        line = f"New client secret installed for {tenant.name}; it expires {tenant.client_secret_expires_at:%Y-%m-%d}."
        if tenant.previous_client_secret:
            line += f" The previous one is still accepted until {tenant.previous_client_secret_expires_at:%Y-%m-%d %H:%M} UTC."
        self.stdout.write(line)
