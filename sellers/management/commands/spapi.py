import json

from django.core.management.base import BaseCommand, CommandError

from sellers.models import Region, Seller
from sellers.redaction import redact
from sellers.services.spapi import (
    AppCredentialsRejected,
    PathNotMapped,
    ReauthorizationRequired,
    RoleNotRegistered,
    ScopeNotGranted,
    SpapiError,
    TokenUnavailable,
    spapi_request,
)

from ._common import tenant_by_slug


def _param(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise CommandError(f"--param takes key=value, got {value!r}.")
    return key, val


class Command(BaseCommand):
    help = (
        "Call SP-API for one seller and print the JSON answer, e.g. "
        "`spapi A1SELLER GET /sellers/v1/marketplaceParticipations`. The call is refused before any "
        "request when the seller has not granted the scope the path needs; a revoked seller gets "
        "the re-authorization link. Errors exit non-zero."
    )

    def add_arguments(self, parser):
        parser.add_argument("selling_partner_id")
        parser.add_argument("method", help="GET, POST, PUT, PATCH or DELETE.")
        parser.add_argument("path", help="SP-API path, e.g. /orders/v0/orders.")
        parser.add_argument("--tenant", help="Tenant slug (needed when the seller is connected to several tenants).")
        parser.add_argument("--region", choices=Region.values, help="Region (needed when the seller is connected in several).")
        parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="Query parameter; repeatable.")
        parser.add_argument("--data", help="JSON request body for POST/PUT/PATCH.")

    def handle(self, *args, **options):
        sellers = Seller.objects.select_related("tenant").filter(selling_partner_id=options["selling_partner_id"])
        if options["tenant"]:
            sellers = sellers.filter(tenant=tenant_by_slug(options["tenant"]))
        if options["region"]:
            sellers = sellers.filter(region=options["region"])
        found = list(sellers[:10])
        if not found:
            raise CommandError(f"No seller with selling_partner_id {options['selling_partner_id']!r} (check --tenant/--region).")
        if len(found) > 1:
            where = ", ".join(f"{s.tenant.slug}/{s.region}" for s in found)
            raise CommandError(f"Several sellers match ({where}); pass --tenant and/or --region.")
        seller = found[0]
        params: dict[str, list[str]] = {}
        for raw in options["param"]:
            key, value = _param(raw)
            params.setdefault(key, []).append(value)
        body = None
        if options["data"] is not None:
            try:
                body = json.loads(options["data"])
            except ValueError as exc:
                raise CommandError(f"--data is not valid JSON: {exc}") from None

        try:
            response = spapi_request(seller=seller, method=options["method"], path=options["path"], params=params or None, json=body)
        except RoleNotRegistered as exc:
            raise CommandError(f"Missing app role: {exc}") from None
        except ScopeNotGranted as exc:
            raise CommandError(f"Missing scope {exc.scope}: {exc}") from None
        except PathNotMapped as exc:
            raise CommandError(f"Refused: {exc}") from None
        except ReauthorizationRequired as exc:
            need = "" if exc.never_authorized else "Re-authorization needed: "  # the message says it
            raise CommandError(f"{need}{exc} Send the seller this link: {exc.link.url}") from None
        except AppCredentialsRejected as exc:
            raise CommandError(f"App credentials rejected: {exc}") from None
        except TokenUnavailable as exc:
            raise CommandError(f"No access token right now (LWA failing, retrying later): {exc}") from None
        except SpapiError as exc:
            raise CommandError(f"SP-API error: {exc}") from None

        # Amazon's answer may hold a token (a restricted data token, a document's signed URL):
        # the same redaction as the logs.
        self.stdout.write(redact(json.dumps(response.body, indent=2, sort_keys=True)))
        if response.status_code >= 400:
            raise CommandError(f"SP-API answered HTTP {response.status_code} (body above).")
