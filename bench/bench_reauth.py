#!/usr/bin/env python
"""Re-authorization campaign benchmark; results go to docs/benchmarks.md, section "reauth".

`manage.py reauth --tenant T --send-email --output campaign.csv` over 2,000 and 10,000 matching
sellers (a mix of partial, revoked, expired and renewal-due, every one with an email address):

* first run: every seller gets a new link, a history event and an email (Django's dummy email
  backend: rendering and the send loop are measured, no SMTP server);
* second run: the idempotent case, every link reused and nobody emailed again;
* peak memory of a first run, traced with tracemalloc on a fresh tenant of the same size: it
  must not grow with the number of sellers (the command works in chunks).

Everything runs in-process against a temporary SQLite file, removed afterwards.

    .venv/bin/python bench/bench_reauth.py [--sizes 2000,10000]
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import shutil
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

TARGET_SECONDS = 30.0


def configure(tmp: Path) -> None:
    from cryptography.fernet import Fernet

    os.environ.update(
        {
            "DEBUG": "false",  # as in production: no query log
            "SECRET_KEY": secrets.token_urlsafe(50),
            "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "DATABASE_URL": f"sqlite:///{tmp / 'bench_reauth.sqlite3'}",
            "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
            "SITE_URL": "https://spconnect.example",
            "SPCONNECT_ENV_FILE": "/nonexistent",
            "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "spconnect.settings",
        }
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def populate(slug: str, n: int) -> None:
    from django.db import transaction
    from django.utils import timezone

    from sellers.models import Grant, ScopeRequirement, Seller, Tenant

    orders, inventory = "sellingpartnerapi::orders", "sellingpartnerapi::inventory"
    now = timezone.now()
    # Every seller matches the campaign's default selection, in four different ways.
    kinds = [
        ("partial", [orders], 100, "active"),
        ("revoked", [orders, inventory], 100, "revoked"),
        ("expired", [orders, inventory], 380, "active"),
        ("active", [orders, inventory], 345, "active"),  # renewal due within the window
    ]
    with transaction.atomic():
        tenant = Tenant.objects.create(slug=slug, name=f"Agency {slug}", application_id=f"amzn1.sellerapps.app.{slug}",
                                       client_id=f"amzn1.application-oa2-client.{slug}", client_secret="bench-secret-0123456789")
        for scope in (orders, inventory):
            ScopeRequirement.objects.create(tenant=tenant, scope=scope, reason="Bench.")
        sellers = Seller.objects.bulk_create(
            [
                Seller(tenant=tenant, name=f"Seller {i:05d}", email=f"seller{i}@example.com", region=("na", "eu", "fe")[i % 3],
                       selling_partner_id=f"A{slug.upper()}{i:08d}", status=kinds[i % 4][0])
                for i in range(n)
            ],
            batch_size=2000,
        )
        Grant.objects.bulk_create(
            [
                Grant(seller=s, refresh_token=f"Atzr|bench-{s.pk}-" + "r" * 300, access_token="",
                      granted_scopes=kinds[i % 4][1], scopes_confirmed=True,
                      authorized_at=now - timedelta(days=kinds[i % 4][2]), status=kinds[i % 4][3],
                      revoked_at=now if kinds[i % 4][3] == "revoked" else None)
                for i, s in enumerate(sellers)
            ],
            batch_size=2000,
        )


def run_reauth(slug: str, csv_path: Path, *, trace: bool = False) -> dict:
    from django.core.management import call_command
    from django.db import connection

    queries = 0

    def count(execute, sql, params, many, context):
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    out = io.StringIO()
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    with connection.execute_wrapper(count):
        call_command("reauth", "--tenant", slug, "--send-email", "--output", str(csv_path), stdout=out, stderr=io.StringIO())
    seconds = time.perf_counter() - start
    peak = 0
    if trace:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {"seconds": seconds, "queries": queries, "peak_mib": peak / 2**20, "summary": out.getvalue().strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,10000", help="comma-separated seller counts (default: 2000,10000)")
    parser.add_argument("--no-write", action="store_true", help="print the figures, do not touch docs/benchmarks.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="bench-reauth-"))
    try:
        configure(tmp)
        from sellers.models import Event, Invitation

        # Warm-up on a small tenant: the first command of a process loads templates and URL
        # resolvers, which would otherwise be charged to the first size measured.
        populate("warm", 50)
        run_reauth("warm", tmp / "warm.csv")

        results = []
        for n in sizes:
            populate(f"t{n}", n)
            populate(f"m{n}", n)
            first = run_reauth(f"t{n}", tmp / f"first-{n}.csv")
            assert f"{n} seller(s)" in first["summary"] and f"created {n} link(s)" in first["summary"], first["summary"]
            assert f"Emailed {n}." in first["summary"], first["summary"]
            second = run_reauth(f"t{n}", tmp / f"second-{n}.csv")
            assert "created 0 link(s)" in second["summary"] and "Emailed 0" in second["summary"], second["summary"]
            traced = run_reauth(f"m{n}", tmp / f"traced-{n}.csv", trace=True)
            rows = sum(1 for _ in open(tmp / f"first-{n}.csv")) - 1
            assert rows == n
            results.append((n, first, second, traced))
            print(
                f"{n:>6} sellers: first run {first['seconds']:.2f} s ({n / first['seconds']:,.0f}/s, {first['queries']} queries), "
                f"second run {second['seconds']:.2f} s ({second['queries']} queries), peak traced memory {traced['peak_mib']:.1f} MiB",
                flush=True,
            )
        assert Invitation.objects.count() == 2 * sum(sizes) + 50
        assert Event.objects.filter(kind=Event.Kind.REAUTH_LINK_EMAILED).count() == 2 * sum(sizes) + 50

        lines = [
            "`manage.py reauth --tenant T --send-email --output campaign.csv`, every seller matching "
            "(partial, revoked, expired and renewal-due in equal parts, all with an email address), "
            "SQLite file, Django's dummy email backend (templates rendered, no SMTP). First run: a new "
            "link, a history event and an email per seller. Second run: the idempotent case (links "
            "reused, nobody emailed twice). Peak memory: tracemalloc over a first run on a fresh tenant "
            "of the same size. One warm-up run on 50 sellers first.",
            "",
            "| sellers | first run | sellers/s | queries | second run | queries | peak traced memory |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for n, first, second, traced in results:
            lines.append(
                f"| {n:,} | {first['seconds']:.2f} s | {n / first['seconds']:,.0f} | {first['queries']:,} | "
                f"{second['seconds']:.2f} s | {second['queries']:,} | {traced['peak_mib']:.1f} MiB |"
            )
        biggest = results[-1]
        verdict = "under" if biggest[1]["seconds"] < TARGET_SECONDS else "OVER"
        lines += [
            "",
            f"{biggest[0]:,} sellers took {biggest[1]['seconds']:.1f} s, {verdict} the {TARGET_SECONDS:.0f} s target. "
            f"Peak memory {results[0][3]['peak_mib']:.1f} MiB at {results[0][0]:,} sellers vs "
            f"{biggest[3]['peak_mib']:.1f} MiB at {biggest[0]:,}: flat, because sellers are read in keyset "
            "chunks of 500 and links, events and emails are written per chunk. Queries grow with the "
            "number of emails (one conditional UPDATE per email claims it, so two campaigns at once never "
            "email a seller twice), not with the number of sellers otherwise.",
        ]
        markdown = "\n".join(lines)
        print(markdown)
        if not args.no_write:
            from _report import write_section

            write_section("reauth", "## Re-authorization campaign (`reauth`)\n\n" + markdown)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
