import sys

from django.core.management.base import BaseCommand, CommandError

from sellers.services.amazon_notifications import NEW_SECRET, SECRET_EXPIRY, notification_ingest, notification_parse
from sellers.services.client_secrets import ClientSecretError

MAX_BYTES = 256 * 1024  # an SQS message is at most 256 KiB


class Command(BaseCommand):
    stealth_options = ("stdin",)  # call_command(..., stdin=…) in tests and scripts
    help = (
        f"Apply an Amazon SP-API notification about the app's LWA client secret: {NEW_SECRET} installs "
        "the new secret for the tenant whose client_id matches (the current one stays valid until "
        f"oldClientSecretExpiryTime); {SECRET_EXPIRY} records the coming expiry and warns the tenant's "
        "owners and managers. Reads the notification JSON (or an SQS message holding it) from FILE, "
        "or from standard input with '-'. Never prints the secret; safe to run twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", metavar="FILE", help="Path of the notification JSON, or - for standard input.")

    def handle(self, *args, **options):
        path = options["file"]
        if path == "-":
            stdin = options.get("stdin") or sys.stdin
            text = stdin.read(MAX_BYTES + 1)  # characters: at least as many bytes
            if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogateescape")) > MAX_BYTES:
                raise CommandError(f"Standard input holds more than {MAX_BYTES // 1024} KiB; Amazon's notifications are small.")
        else:
            try:
                with open(path, "rb") as f:
                    text = f.read(MAX_BYTES + 1)
            except OSError as exc:
                raise CommandError(f"Cannot read {path}: {exc.strerror}.") from None
            if len(text) > MAX_BYTES:
                raise CommandError(f"{path} is larger than {MAX_BYTES // 1024} KiB; Amazon's notifications are small.")
        try:
            results = notification_ingest(document=notification_parse(text), actor="amazon")
        except ClientSecretError as exc:
            raise CommandError(str(exc)) from None
        for result in results:
            self.stdout.write(f"{result.notification_type}: {result.summary}.")
