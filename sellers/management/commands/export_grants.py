import json

from django.core.management.base import BaseCommand

from sellers.csv_safety import SafeDictWriter
from sellers.models import Seller
from sellers.services.exports import FIELDS, csv_row, seller_records

from ._common import tenant_by_slug


class Command(BaseCommand):
    help = (
        "Export one record per seller: tenant, name, region, selling_partner_id, status, granted "
        "and missing scopes, whether Amazon confirmed the scopes (scopes_source: \"confirmed by Amazon\" or "
        "\"from the app's registration\"), access-token expiry and "
        "authorization time. Never a token or secret."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Only this tenant's sellers (slug).")
        parser.add_argument("--format", choices=["json", "csv"], default="json", help="Output format (default: json).")

    def handle(self, *args, **options):
        sellers = Seller.objects.all()
        if options["tenant"]:
            sellers = sellers.filter(tenant=tenant_by_slug(options["tenant"]))
        records = seller_records(sellers)
        if options["format"] == "json":
            self.stdout.write(json.dumps(list(records), indent=2))
            return
        writer = SafeDictWriter(self.stdout, fieldnames=FIELDS)
        writer.writeheader()
        for record in records:
            writer.writerow(csv_row(record))
