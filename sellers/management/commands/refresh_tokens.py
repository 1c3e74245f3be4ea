from django.core.management.base import BaseCommand, CommandError

from sellers.models import Grant
from sellers.selectors import grants_due
from sellers.services.tokens import RefreshOutcome, grants_refresh

from ._common import Progress, tenant_by_slug


class Command(BaseCommand):
    help = (
        "Refresh access tokens at LWA now, as the background schedule does. --due (default): grants "
        "whose token expires within SPCONNECT_REFRESH_WINDOW_SECONDS and that are not backing off; "
        "--all: every active grant, even with a fresh token. Revoked grants are never refreshed. "
        "A grant whose tokens no configured key decrypts is skipped, named and recorded in its history. "
        "Prints a summary of refreshed / revoked / failed / skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Only this tenant's sellers (slug).")
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--due", action="store_true", help="Only grants due for a refresh (the default).")
        which.add_argument("--all", action="store_true", help="Every active grant, ignoring expiry and backoff.")
        parser.add_argument("--dry-run", action="store_true", help="Show how many grants would be refreshed; call nothing.")
        parser.add_argument("--workers", type=int, default=1, help="Concurrent refreshes (threads), 1–32; default 1.")

    def handle(self, *args, **options):
        tenant = tenant_by_slug(options["tenant"]) if options["tenant"] else None
        workers = options["workers"]
        if not 1 <= workers <= 32:
            raise CommandError("--workers must be between 1 and 32.")
        force = bool(options["all"])
        if force:
            qs = Grant.objects.filter(status=Grant.Status.ACTIVE)
            if tenant is not None:
                qs = qs.filter(seller__tenant=tenant)
            qs = qs.order_by("pk")
        else:
            qs = grants_due(tenant=tenant)
        ids = list(qs.values_list("pk", flat=True))
        scope = f"tenant {tenant.slug}" if tenant else "all tenants"
        what = "active" if force else "due"
        if options["dry_run"]:
            self.stdout.write(f"Dry run: {len(ids)} {what} grant(s) in {scope} would be refreshed. Nothing was sent.")
            return
        if not ids:
            self.stdout.write(f"No {what} grants in {scope}.")
            return

        progress = Progress(len(ids), label="Refreshing", stream=self.stderr)
        problems: list[str] = []

        def on_result(grant_id, result):
            progress.advance()
            if result.outcome in (
                RefreshOutcome.REVOKED, RefreshOutcome.CREDENTIALS_FAILED, RefreshOutcome.TRANSIENT_FAILURE,
                RefreshOutcome.UNDECRYPTABLE,
            ):
                seller = result.grant.seller if result.grant is not None else None
                who = f"{seller.name} ({seller.selling_partner_id})" if seller else f"grant {grant_id}"
                problems.append(f"  {who}: {RefreshOutcome(result.outcome).label} — {result.detail}")

        try:
            summary = grants_refresh(grant_ids=ids, actor="command:refresh_tokens", force=force, workers=workers, on_result=on_result)
        finally:
            progress.close()
        for line in problems[:50]:
            self.stdout.write(line)
        if len(problems) > 50:
            self.stdout.write(f"  … and {len(problems) - 50} more (see the sellers' history).")
        style = self.style.SUCCESS if summary.failed == 0 else self.style.WARNING
        self.stdout.write(style(f"{len(ids)} {what} grant(s) in {scope}: {summary}."))
