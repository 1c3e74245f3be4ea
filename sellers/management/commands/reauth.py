
from django.core.management.base import BaseCommand, CommandError

from sellers.csv_safety import SafeCsvWriter
from sellers.models import Seller
from sellers.scopes import CATALOG
from sellers.selectors import DEFAULT_STATUSES, reauth_candidates
from sellers.services.campaigns import ReauthSummary, SelectionError, reauth_run, reauth_selection_build

from ._common import Progress, tenant_by_slug

CSV_COLUMNS = ["name", "selling_partner_id", "status", "missing_scopes", "link", "emailed"]


class Command(BaseCommand):
    help = (
        "Re-authorization campaign: give every matching seller of a tenant a re-authorization link "
        "(its open link is reused, else one is created) and optionally email it. Filters combine "
        "with AND; without any filter the campaign targets sellers that are "
        f"{', '.join(DEFAULT_STATUSES)} or whose yearly renewal is due within "
        "SPCONNECT_RENEWAL_WINDOW_DAYS. Idempotent: a second run creates no new link and sends no "
        "second email within a link's lifetime (unless --resend)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="Tenant slug.")
        parser.add_argument(
            "--status",
            default="",
            help=f"Comma-separated seller statuses, e.g. revoked,partial,expired,failing (any of {', '.join(Seller.Status.values)}).",
        )
        parser.add_argument(
            "--missing-scope",
            action="append",
            default=[],
            metavar="SCOPE",
            help="Sellers whose grant lacks this scope (repeatable; catalog name or short form, e.g. "
            f"{next(iter(CATALOG))} or orders).",
        )
        parser.add_argument(
            "--renewal-due-within",
            type=int,
            default=None,
            metavar="DAYS",
            help="Sellers whose yearly renewal is due within DAYS days, or already overdue.",
        )
        parser.add_argument(
            "--seller",
            action="append",
            default=[],
            metavar="SELLING_PARTNER_ID",
            help="Only this seller (repeatable).",
        )
        parser.add_argument(
            "--send-email",
            action="store_true",
            help="Email each seller its link (Django's email backend); recorded in the history.",
        )
        parser.add_argument("--resend", action="store_true", help="With --send-email: email sellers already emailed this link, too.")
        parser.add_argument("--dry-run", action="store_true", help="Change nothing and send nothing; show what would happen.")
        parser.add_argument(
            "--output",
            metavar="FILE.csv",
            help="Write name, selling_partner_id, status, missing_scopes, link, emailed (yes/no) to this CSV file.",
        )

    def handle(self, *args, **options):
        tenant = tenant_by_slug(options["tenant"])
        if options["resend"] and not options["send_email"]:
            raise CommandError("--resend only makes sense with --send-email.")
        statuses = [s for s in options["status"].split(",") if s.strip()]
        if options["status"] and not statuses:
            raise CommandError("--status is empty; name at least one status.")
        try:
            selection = reauth_selection_build(
                tenant=tenant,
                statuses=statuses,
                missing_scopes=options["missing_scope"],
                renewal_due_within_days=options["renewal_due_within"],
                selling_partner_ids=options["seller"],
            )
        except SelectionError as exc:
            raise CommandError(str(exc)) from None

        dry_run = options["dry_run"]
        out_file = None
        if options["output"]:
            try:
                out_file = open(options["output"], "w", newline="", encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"Cannot write {options['output']}: {exc.strerror}.") from None
        try:
            summary = self._run(selection, options, out_file)
        finally:
            if out_file is not None:
                out_file.close()

        prefix = "Dry run, nothing changed: " if dry_run else ""
        created = "would create" if dry_run else "created"
        lines = [
            f"{prefix}{summary.matched} seller(s) of {tenant.name} matched; "
            f"{created} {summary.links_created} link(s), reused {summary.links_reused}.",
        ]
        if options["send_email"]:
            sent = f"would email {summary.would_email}" if dry_run else f"emailed {summary.emailed}"
            skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(summary.not_emailed.items()))
            lines.append(f"{sent.capitalize()}" + (f"; not emailed: {skipped}." if skipped else "."))
        if out_file is not None:
            lines.append(f"Wrote {summary.matched} row(s) to {options['output']}.")
        for line in lines:
            self.stdout.write(line)

    def _run(self, selection, options, out_file) -> ReauthSummary:
        summary = ReauthSummary()
        writer = None
        if out_file is not None:
            writer = SafeCsvWriter(out_file)
            writer.writerow(CSV_COLUMNS)
        progress = Progress(reauth_candidates(selection=selection).count(), "reauth", stream=self.stderr)
        rows = reauth_run(
            selection=selection,
            send_email=options["send_email"],
            resend=options["resend"],
            dry_run=options["dry_run"],
            actor="command:reauth",
            on_scanned=progress.advance,
        )
        try:
            for row in rows:
                summary.add(row)
                missing = " ".join(row.missing_scopes)
                emailed = "yes" if row.emailed else "no"
                if writer is not None:
                    writer.writerow([row.name, row.selling_partner_id, row.status, missing, row.link, emailed])
                else:
                    action = "would email" if row.would_email else ("emailed" if row.emailed else (row.note or ""))
                    self.stdout.write(
                        f"{row.name} ({row.selling_partner_id or 'not connected'}) {row.status}"
                        + (f", missing {missing}" if missing else "")
                        + f": {row.link}"
                        + (f" [{action}]" if action else "")
                    )
        finally:
            progress.close()
        return summary
