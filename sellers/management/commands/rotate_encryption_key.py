from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sellers.services.encryption_keys import UnreadableEncryptedValue, encrypted_rows_count, encryption_key_rotate

from ._common import Progress


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted field with the first key of FIELD_ENCRYPTION_KEY. Put the new "
        'key first and keep the old one after it (FIELD_ENCRYPTION_KEY="NEW,OLD"), run this, then '
        "drop the old key. Works in batches and is resumable: values already under the new key are "
        "skipped, so running it again is harmless. A value no configured key can read stops the "
        "command with the model, row id and field named."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per batch and transaction, 1–10000 (default: 500).")
        parser.add_argument("--dry-run", action="store_true", help="Read and check every value, write nothing.")

    def handle(self, *args, **options):
        if not (1 <= options["batch_size"] <= 10_000):
            raise CommandError("--batch-size must be between 1 and 10000.")
        keys = settings.FIELD_ENCRYPTION_KEY
        if isinstance(keys, str) or len(keys) < 2:
            self.stderr.write(
                "FIELD_ENCRYPTION_KEY holds one key: nothing to rotate from. Values are only checked. "
                'To rotate, set FIELD_ENCRYPTION_KEY="NEW,OLD".'
            )
        progress = Progress(encrypted_rows_count(), "Re-encrypting", stream=self.stderr)
        try:
            report = encryption_key_rotate(
                batch_size=options["batch_size"],
                dry_run=options["dry_run"],
                on_batch=lambda label, n: progress.advance(n),
            )
        except UnreadableEncryptedValue as exc:
            raise CommandError(f"{exc} Batches before this row are already re-encrypted; rerun to resume.") from None
        finally:
            progress.close()
        verb = "would re-encrypt" if options["dry_run"] else "re-encrypted"
        for col in report.columns:
            line = f"{col.label}: {verb} {col.rotated}, already under the new key {col.current}, empty {col.empty}"
            if col.changed_meanwhile:
                line += f", rewritten by the app meanwhile {col.changed_meanwhile}"
            self.stdout.write(line)
        prefix = "Dry run, nothing written: " if options["dry_run"] else ""
        self.stdout.write(
            f"{prefix}{verb} {report.rotated} value(s) in {len(report.columns)} field(s); "
            f"{report.current} already under the new key."
        )
        if not options["dry_run"] and report.keys > 1:
            self.stdout.write("Every value is under the first key now; the other keys can be removed from FIELD_ENCRYPTION_KEY.")
