from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from api.keys import MAX_EXPIRES_DAYS, ApiKeyError, api_key_create, api_key_revoke
from api.models import ApiKey, Permission
from sellers.management.commands._common import tenant_by_slug

ACTOR = "command:api_key"


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _when(value) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "never"


class Command(BaseCommand):
    help = (
        "Create, list and revoke a tenant's API keys (Authorization: Bearer spc_… on /api/v1/). "
        "`create` prints the key alone on its last line, once: it is stored only as a hash. "
        "See `api_key create --help`."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", metavar="{create,list,revoke}", required=True)
        create = sub.add_parser(
            "create",
            help="Create a key and print it (last line).",
            description="Create an API key for a tenant. The key is printed alone on the last line and never shown again.",
        )
        create.add_argument("--tenant", required=True, help="Tenant slug.")
        create.add_argument("--name", required=True, help="A name unique within the tenant, e.g. repricer.")
        create.add_argument(
            "--permissions",
            required=True,
            help=f"Comma-separated: {', '.join(Permission.values)}. tokens:read hands out access tokens "
            "(full power over the sellers' data): give it only to programs that call SP-API.",
        )
        create.add_argument(
            "--paths",
            default="",
            help="Comma-separated SP-API path prefixes the key's proxy calls are limited to, e.g. /orders/v0/ (default: any).",
        )
        create.add_argument(
            "--expires-days", type=int, default=None, help=f"Lifetime in days, 1 to {MAX_EXPIRES_DAYS} (default: no expiry)."
        )
        listing = sub.add_parser("list", help="List a tenant's keys (prefixes only, never a key).")
        listing.add_argument("--tenant", required=True, help="Tenant slug.")
        revoke = sub.add_parser("revoke", help="Revoke a key by name; it stops working at once.")
        revoke.add_argument("--tenant", required=True, help="Tenant slug.")
        revoke.add_argument("--name", required=True, help="The key's name (see `api_key list`).")

    def handle(self, *args, **options):
        tenant = tenant_by_slug(options["tenant"])
        getattr(self, f"_{options['action']}")(tenant, options)

    def _create(self, tenant, options):
        try:
            key, full = api_key_create(
                tenant=tenant,
                name=options["name"],
                permissions=_split(options["permissions"]),
                paths=_split(options["paths"]),
                expires_days=options["expires_days"],
                actor=ACTOR,
            )
        except ApiKeyError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Created API key {key.name} (spc_{key.prefix}_…) for {tenant.name}: {', '.join(key.permissions)}"
            + (f"; proxy paths {', '.join(key.paths)}" if key.paths else "")
            + f"; expires {_when(key.expires_at)}."
        )
        self.stdout.write("Store it now: it is shown only this once.")
        self.stdout.write(full)

    def _list(self, tenant, options):
        keys = list(ApiKey.objects.filter(tenant=tenant).order_by("name"))
        if not keys:
            self.stdout.write(f"{tenant.slug} has no API keys. Create one with `api_key create --tenant {tenant.slug} …`.")
            return
        rows = [("name", "prefix", "state", "permissions", "paths", "last used", "expires", "created")]
        for key in keys:
            rows.append(
                (
                    key.name,
                    key.display_prefix,
                    key.state,
                    ",".join(key.permissions),
                    ",".join(key.paths) or "any",
                    _when(key.last_used_at),
                    _when(key.expires_at),
                    f"{_when(key.created_at)} by {key.created_by or '?'}",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

    def _revoke(self, tenant, options):
        key = ApiKey.objects.filter(tenant=tenant, name=options["name"].strip()).first()
        if key is None:
            known = ", ".join(ApiKey.objects.filter(tenant=tenant).order_by("name").values_list("name", flat=True)[:20])
            raise CommandError(f"{tenant.slug} has no API key named {options['name']!r}. Keys: {known or 'none'}.")
        if not api_key_revoke(api_key=key, actor=ACTOR):
            raise CommandError(f"{key.name} (spc_{key.prefix}_…) was already revoked at {_when(key.revoked_at)}.")
        self.stdout.write(f"Revoked {key.name} (spc_{key.prefix}_…) at {_when(timezone.now())}: it no longer works.")
