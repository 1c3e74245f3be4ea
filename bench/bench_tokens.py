#!/usr/bin/env python
"""Token lifecycle benchmarks; results go to docs/benchmarks.md, section "tokens".

* Hot path: 10,000 `grant_access_token` calls round-robin over 1,000 valid grants.
* Refresh sweep: 5,000 due grants refreshed against the local sandbox's LWA over real HTTP
  (gunicorn on a free 127.0.0.1 port, its own SQLite file), compared with the same number of
  bare HTTP POSTs to the same endpoint at the same concurrency: once with threads in one
  process, once with worker processes (as django-q2 runs it); then spconnect's own CPU per
  refresh with LWA's answer canned. `--profile` prints where the client's CPU goes instead.
* Single flight: 50 threads, then 4 processes, asking for one expired grant.

Everything runs in a temporary directory (two SQLite files: spconnect's and the sandbox's) and
is removed afterwards. Bounded: a few minutes at most on a small machine.

    .venv/bin/python bench/bench_tokens.py [--grants 5000] [--workers 4] [--lwa-latency-ms 20]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from datetime import timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

HOT_GRANTS, HOT_CALLS = 1_000, 10_000
# --lwa-latency-ms: every request to LWA's token endpoint (the sweep's and the bare POSTs alike)
# waits this long in the client first, as the round trip to a remote LWA would. The local sandbox
# answers in about a millisecond, which hides how small spconnect's own work is next to that.
LWA_LATENCY = float(os.environ.get("BENCH_LWA_LATENCY_MS") or 0) / 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(tmp: Path, port: int) -> dict[str, str]:
    from cryptography.fernet import Fernet

    return {
        "DEBUG": "false",  # no query log, as in production
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "SPAPI_SANDBOX": "true",
        "SPAPI_SANDBOX_ALLOW_WITHOUT_DEBUG": "true",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SITE_URL": f"http://127.0.0.1:{port}",
        "SPCONNECT_ENV_FILE": "/nonexistent",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": f"sqlite:///{tmp / 'spconnect.sqlite3'}",
        "BENCH_SANDBOX_DATABASE_URL": f"sqlite:///{tmp / 'sandbox.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "bench_tokens_settings",
        "REDIS_URL": "",
    }


# --- Counting ------------------------------------------------------------------------------------


class Counter:
    def __init__(self):
        self.value = 0
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.value += n


def count_queries(counter: Counter):
    """Count every SQL statement of every thread (DEBUG off, so Django keeps no query log)."""
    from django.db.backends import utils

    original = utils.CursorWrapper._execute_with_wrappers

    def counted(self, *args, **kwargs):
        counter.add()
        return original(self, *args, **kwargs)

    utils.CursorWrapper._execute_with_wrappers = counted
    return lambda: setattr(utils.CursorWrapper, "_execute_with_wrappers", original)


def add_lwa_latency() -> None:
    """Delay each LWA request made through `sellers.http.send` by LWA_LATENCY (once per process)."""
    from django.conf import settings

    from sellers import http

    if not LWA_LATENCY or getattr(http.send, "bench_latency", False):
        return
    original = http.send

    def delayed(method, url, **kwargs):
        if url == settings.SPAPI_LWA_TOKEN_URL:
            time.sleep(LWA_LATENCY)
        return original(method, url, **kwargs)

    delayed.bench_latency = True
    http.send = delayed


def count_lwa_calls(counter: Counter):
    from django.conf import settings

    from sellers import http as amazon

    original = amazon.send

    def counted(method, url, **kwargs):
        if url == settings.SPAPI_LWA_TOKEN_URL:
            counter.add()
        return original(method, url, **kwargs)

    amazon.send = counted
    return lambda: setattr(amazon, "send", original)


# --- Data ------------------------------------------------------------------------------------------


def make_data(n_due: int) -> dict:
    from django.utils import timezone

    from sandbox.models import SandboxAuthorization
    from sellers.models import Grant, Seller, Tenant

    now = timezone.now()
    secret = "bench-secret-" + secrets.token_hex(8)
    tenants = {}
    for slug in ("hot", "sweep", "flight"):
        values = dict(slug=slug, name=f"Bench {slug}", application_id=f"amzn1.sellerapps.app.{slug}",
                      client_id=f"amzn1.application-oa2-client.bench-{slug}", client_secret=secret)
        tenants[slug] = Tenant.objects.create(**values)
        Tenant.objects.using("sandbox").create(**values)  # the app registration "Amazon" knows

    def grants(tenant, count: int, expires_in: int, prefix: str) -> list[int]:
        refresh = [f"Atzr|bench-{prefix}-{i}-{secrets.token_urlsafe(12)}" for i in range(count)]
        sellers = Seller.objects.bulk_create(
            [Seller(tenant=tenant, name=f"{prefix} {i}", selling_partner_id=f"A{prefix.upper()}{i:06d}", status="active")
             for i in range(count)], batch_size=500)
        Grant.objects.bulk_create(
            # Scopes as the sandbox will echo them (none requested), already confirmed: routine refreshes.
            [Grant(seller=s, refresh_token=r, access_token=f"Atza|bench-{prefix}-{i}", authorized_at=now,
                   granted_scopes=[], scopes_confirmed=True,
                   access_token_expires_at=now + timedelta(seconds=expires_in), last_refreshed_at=now)
             for i, (s, r) in enumerate(zip(sellers, refresh, strict=True))], batch_size=500)
        SandboxAuthorization.objects.using("sandbox").bulk_create(
            [SandboxAuthorization(client_id=tenant.client_id, selling_partner_id=s.selling_partner_id, region="na",
                                  scopes=[], redirect_uri=tenant.effective_redirect_uri, code_hash=secrets.token_hex(32),
                                  code_expires_at=now, code_used_at=now,
                                  refresh_token_hash=hashlib.sha256(r.encode()).hexdigest())
             for s, r in zip(sellers, refresh, strict=True)], batch_size=500)
        return list(Grant.objects.filter(seller__tenant=tenant).order_by("pk").values_list("pk", flat=True))

    return {
        "tenants": tenants,
        "secret": secret,
        "hot": grants(tenants["hot"], HOT_GRANTS, 3600, "hot"),
        "sweep": grants(tenants["sweep"], n_due, 60, "sweep"),
        "flight": grants(tenants["flight"], 1, -5, "flight")[0],
        "sweep_refresh_tokens": None,
    }


# --- Hot path --------------------------------------------------------------------------------------


def bench_hot_path(ids: list[int]) -> dict:
    from sellers.models import Grant
    from sellers.services.tokens import access_token_cache_clear, grant_access_token

    lwa, queries = Counter(), Counter()
    undo_lwa, undo_q = count_lwa_calls(lwa), count_queries(queries)
    try:
        out = {}
        full = list(Grant.objects.filter(pk__in=ids).order_by("pk"))
        light = list(Grant.objects.filter(pk__in=ids).order_by("pk").only("id", "status", "version", "access_token_expires_at"))
        access_token_cache_clear()
        for grant in light:  # warm the in-process cache: one small query each, once
            grant_access_token(grant=grant)
        for name, pool in (("loaded grants", full), ("grants loaded without tokens (in-process cache)", light)):
            queries.value = lwa.value = 0
            start = time.perf_counter()
            for i in range(HOT_CALLS):
                grant_access_token(grant=pool[i % len(pool)])
            elapsed = time.perf_counter() - start
            out[name] = {"calls_per_s": HOT_CALLS / elapsed, "queries_per_call": queries.value / HOT_CALLS, "lwa": lwa.value}
        # What spapi_request does per call: load the grant's small columns, then ask.
        access_token_cache_clear()
        for pk in ids:  # warm: the first ask per grant reads its token once
            grant_access_token(grant=Grant.objects.only("id", "status", "version", "access_token_expires_at").get(pk=pk))
        queries.value = lwa.value = 0
        start = time.perf_counter()
        for i in range(HOT_CALLS):
            grant = Grant.objects.only("id", "status", "version", "access_token_expires_at").get(pk=ids[i % len(ids)])
            grant_access_token(grant=grant)
        elapsed = time.perf_counter() - start
        out["grant read per call (as spapi_request)"] = {
            "calls_per_s": HOT_CALLS / elapsed,
            "queries_per_call": queries.value / HOT_CALLS,
            "lwa": lwa.value,
        }
    finally:
        undo_lwa()
        undo_q()
    # A client library that caches 10 tokens (LRU), asked round-robin over 1,000 sellers.
    lru: OrderedDict[int, bool] = OrderedDict()
    misses = 0
    for i in range(HOT_CALLS):
        key = ids[i % len(ids)]
        if key in lru:
            lru.move_to_end(key)
        else:
            misses += 1
            lru[key] = True
            if len(lru) > 10:
                lru.popitem(last=False)
    out["ten_token_cache_lwa_calls"] = misses
    return out


# --- Refresh sweep ------------------------------------------------------------------------------


def bare_posts(refresh_tokens: list[str], client_id: str, secret: str, workers: int) -> float:
    import requests
    from django.conf import settings

    session = requests.Session()
    url = settings.SPAPI_LWA_TOKEN_URL
    failures = Counter()

    def run(chunk):
        for token in chunk:
            if LWA_LATENCY:
                time.sleep(LWA_LATENCY)
            r = session.post(url, data={"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id,
                                        "client_secret": secret}, headers={"Accept": "application/json"}, timeout=(5, 20))
            if r.status_code != 200:
                failures.add()

    chunks = [refresh_tokens[i::workers] for i in range(workers)]
    threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if failures.value:
        raise SystemExit(f"{failures.value} bare POSTs failed: is the sandbox server healthy?")
    return elapsed


def sweep_worker(mode: str) -> None:
    """One process of the process-based sweep (or of its bare-POST baseline): reads its share as
    one JSON line from stdin, answers "ready", starts at the time the next line names, and
    prints what it did as JSON."""
    import django

    django.setup()
    add_lwa_latency()
    job = json.loads(sys.stdin.readline())
    lwa, queries = Counter(), Counter()
    if mode == "sweep":
        from sellers.services.tokens import RefreshOutcome, grants_refresh

        count_lwa_calls(lwa)
        count_queries(queries)
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    while time.time() < start_at:
        time.sleep(0.001)
    cpu = time.process_time()
    if mode == "sweep":
        summary = grants_refresh(grant_ids=job["ids"], actor="bench")
        refreshed, failed = summary.counts[RefreshOutcome.REFRESHED], summary.failed
    else:
        bare_posts(job["tokens"], job["client_id"], job["secret"], 1)
        refreshed, failed = 0, 0
    print(json.dumps({"end": time.time(), "cpu": time.process_time() - cpu, "lwa": lwa.value,
                      "queries": queries.value, "refreshed": refreshed, "failed": failed}))


def in_processes(mode: str, shares: list[dict]) -> dict:
    """Run `shares` in one process each, all starting together once every one has imported
    Django (however long that takes on a busy machine); wall time from start to last end."""
    procs = [subprocess.Popen([sys.executable, __file__, "--sweep-worker", mode], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in shares]
    for proc, share in zip(procs, shares, strict=True):
        proc.stdin.write(json.dumps(share) + "\n")
        proc.stdin.flush()
    for proc in procs:
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"a {mode} worker failed to start: {proc.stderr.read()[-800:]}")
    start_at = time.time() + 0.2
    for proc in procs:
        proc.stdin.write(f"{start_at}\n")
        proc.stdin.close()
    results = []
    for proc in procs:
        stdout = proc.stdout.read()
        stderr = proc.stderr.read()
        if proc.wait(timeout=600):
            raise SystemExit(f"a {mode} worker failed: {stderr[-800:]}")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return {
        "wall": max(r["end"] for r in results) - start_at,
        "cpu": sum(r["cpu"] for r in results),
        **{key: sum(r[key] for r in results) for key in ("lwa", "queries", "refreshed", "failed")},
    }


def bench_sweep_processes(data: dict, workers: int, rounds: int = 5) -> dict:
    """The sweep as django-q2 runs it, in worker processes (no shared interpreter lock), against
    bare POSTs from as many processes; ABBA rounds as in the threaded run."""
    from django.db import connections

    from sellers.models import Grant
    from sellers.services.tokens import grants_due

    tenant = data["tenants"]["sweep"]
    make_due(data["sweep"])
    by_pk = dict(Grant.objects.filter(pk__in=data["sweep"]).values_list("pk", "refresh_token"))
    due_ids = list(grants_due(tenant=tenant).values_list("pk", flat=True))
    version_before = dict(Grant.objects.filter(pk__in=due_ids).values_list("pk", "version"))
    connections.close_all()
    totals = {"sweep": 0.0, "bare": 0.0, "sweep_cpu": 0.0, "bare_cpu": 0.0, "lwa": 0, "queries": 0, "refreshed": 0, "failed": 0}
    for r in range(rounds):
        chunk = due_ids[r::rounds]
        order = ("bare", "sweep") if r % 2 == 0 else ("sweep", "bare")
        for step in order:
            parts = [chunk[i::workers] for i in range(workers)]
            if step == "bare":
                shares = [{"tokens": [by_pk[pk] for pk in part], "client_id": tenant.client_id, "secret": data["secret"]}
                          for part in parts]
                result = in_processes("bare", shares)
                totals["bare"] += result["wall"]
                totals["bare_cpu"] += result["cpu"]
            else:
                result = in_processes("sweep", [{"ids": part} for part in parts])
                totals["sweep"] += result["wall"]
                totals["sweep_cpu"] += result["cpu"]
                for key in ("lwa", "queries", "refreshed", "failed"):
                    totals[key] += result[key]
    bumped = sum(1 for pk, v in Grant.objects.filter(pk__in=due_ids).values_list("pk", "version") if v == version_before[pk] + 1)
    n = max(1, len(due_ids))
    return {
        "grants": len(due_ids),
        "workers": workers,
        "rounds": rounds,
        "wall": totals["sweep"],
        "refreshed": totals["refreshed"],
        "refreshed_in_db": bumped,
        "failed": totals["failed"],
        "lwa": totals["lwa"],
        "queries_per_refresh": totals["queries"] / n,
        "bare": totals["bare"],
        "ratio": totals["sweep"] / totals["bare"],
        "cpu_ms_per_refresh": totals["sweep_cpu"] / n * 1000,
        "cpu_ms_per_post": totals["bare_cpu"] / n * 1000,
    }


def bench_sweep(data: dict, workers: int, rounds: int = 5) -> dict:
    """The sweep and the bare POSTs run in interleaved rounds (ABBA), so that load from other
    processes on the machine falls on both alike; each round uses a fifth of the grants."""
    from django.db import connections

    from sellers.models import Grant
    from sellers.services.tokens import RefreshOutcome, RefreshSummary, grants_due, grants_refresh

    tenant = data["tenants"]["sweep"]
    by_pk = dict(Grant.objects.filter(pk__in=data["sweep"]).values_list("pk", "refresh_token"))
    bare_posts(list(by_pk.values())[:200], tenant.client_id, data["secret"], workers)  # warm the server up

    lwa, queries = Counter(), Counter()
    sweep_time = bare_time = sweep_cpu = bare_cpu = 0.0
    summary = RefreshSummary()
    due_ids = list(grants_due(tenant=tenant).values_list("pk", flat=True))
    for r in range(rounds):
        chunk = due_ids[r::rounds]
        tokens_of_chunk = [by_pk[pk] for pk in chunk]
        order = ("bare", "sweep") if r % 2 == 0 else ("sweep", "bare")
        for step in order:
            if step == "bare":
                cpu = time.process_time()
                bare_time += bare_posts(tokens_of_chunk, tenant.client_id, data["secret"], workers)
                bare_cpu += time.process_time() - cpu
                continue
            undo_lwa, undo_q = count_lwa_calls(lwa), count_queries(queries)
            try:
                start, cpu = time.perf_counter(), time.process_time()
                # The real sweep selects the due grants itself; so does each round (its query counts).
                ids = list(grants_due(tenant=tenant).filter(pk__in=chunk).values_list("pk", flat=True))
                part = grants_refresh(grant_ids=ids, actor="bench", workers=workers)
                sweep_time += time.perf_counter() - start
                sweep_cpu += time.process_time() - cpu
            finally:
                undo_lwa()
                undo_q()
            for outcome, n in part.counts.items():
                summary.counts[outcome] += n
    connections.close_all()
    refreshed = Grant.objects.filter(pk__in=data["sweep"], refresh_count=1, version=2).count()
    return {
        "grants": len(due_ids),
        "workers": workers,
        "rounds": rounds,
        "wall": sweep_time,
        "refreshed": summary.counts[RefreshOutcome.REFRESHED],
        "refreshed_in_db": refreshed,
        "failed": summary.failed,
        "lwa": lwa.value,
        "queries_per_refresh": queries.value / max(1, len(due_ids)),
        "bare": bare_time,
        "ratio": sweep_time / bare_time,
        "cpu_ms_per_refresh": sweep_cpu / max(1, len(due_ids)) * 1000,
        "cpu_ms_per_post": bare_cpu / max(1, len(due_ids)) * 1000,
    }


def profile_sweep(data: dict) -> None:
    import cProfile
    import pstats

    from sellers.models import Grant
    from sellers.services.tokens import grants_due, grants_refresh

    tenant = data["tenants"]["sweep"]
    ids = list(grants_due(tenant=tenant).values_list("pk", flat=True))
    tokens = [token for _, token in sorted(Grant.objects.filter(pk__in=ids).values_list("pk", "refresh_token"))]
    warm, measured = ids[:100], ids[100:]
    grants_refresh(grant_ids=warm, actor="bench")
    cpu = time.process_time()
    bare_posts(tokens[100:], tenant.client_id, data["secret"], 1)
    bare_cpu = time.process_time() - cpu
    profiler = cProfile.Profile(time.process_time)  # CPU, not waiting on the server
    cpu = time.process_time()
    profiler.enable()
    grants_refresh(grant_ids=measured, actor="bench")
    profiler.disable()
    sweep_cpu = time.process_time() - cpu
    n = len(measured)
    print(f"client CPU per refresh {sweep_cpu / n * 1000:.2f} ms (profiled), per bare POST {bare_cpu / n * 1000:.2f} ms")
    stats = pstats.Stats(profiler).strip_dirs().sort_stats("cumulative")
    stats.print_stats(45)
    stats.sort_stats("tottime").print_stats(25)

    print(f"spconnect's own CPU per refresh, HTTP stubbed out: {own_cpu_per_refresh(data):.2f} ms")


def make_due(grant_ids: list[int]) -> None:
    from django.utils import timezone

    from sellers.models import Grant

    Grant.objects.filter(pk__in=grant_ids).update(access_token_expires_at=timezone.now() + timedelta(seconds=60))


def own_cpu_per_refresh(data: dict, count: int = 2000) -> float:
    """spconnect's share of a refresh: the sweep once more, one thread, LWA's answer canned
    (no socket, no server), in milliseconds of CPU per refresh."""
    import requests

    from sellers import http as amazon
    from sellers.services.tokens import grants_refresh

    canned = json.dumps({"access_token": "Atza|" + "c" * 300, "token_type": "bearer", "expires_in": 3600}).encode()

    def answer(method, url, **kwargs):
        response = requests.Response()
        response.status_code, response._content = 200, canned
        response.headers["Content-Type"] = "application/json"
        return response

    ids = data["sweep"][:count]
    make_due(ids)
    real_send, amazon.send = amazon.send, answer
    try:
        cpu = time.process_time()
        summary = grants_refresh(grant_ids=ids, actor="bench")
        spent = time.process_time() - cpu
    finally:
        amazon.send = real_send
    if summary.counts["refreshed"] != len(ids):
        raise SystemExit(f"the canned sweep refreshed {summary} of {len(ids)}")
    return spent / len(ids) * 1000


# --- Single flight --------------------------------------------------------------------------------


def sandbox_tokens_issued(spid: str) -> int:
    from sandbox.models import SandboxAccessToken

    return SandboxAccessToken.objects.using("sandbox").filter(authorization__selling_partner_id=spid).count()


def ask_concurrently(grant_id: int, threads: int, start_at: float | None = None) -> tuple[list[str], list[str]]:
    from django.db import connections

    from sellers.models import Grant
    from sellers.services.tokens import grant_access_token

    grant = Grant.objects.get(pk=grant_id)
    connections.close_all()
    barrier = threading.Barrier(threads)
    tokens, errors = [], []

    def ask():
        mine = copy.copy(grant)
        barrier.wait()
        if start_at is not None:
            while time.time() < start_at:
                time.sleep(0.001)
        try:
            tokens.append(grant_access_token(grant=mine))
        except Exception as exc:  # reported, and the benchmark fails on any
            errors.append(repr(exc))
        finally:
            connections.close_all()

    pool = [threading.Thread(target=ask) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return tokens, errors


def expire(grant_id: int) -> None:
    from django.utils import timezone

    from sellers.models import Grant

    Grant.objects.filter(pk=grant_id).update(access_token_expires_at=timezone.now() - timedelta(seconds=5))


def bench_single_flight(grant_id: int) -> dict:
    from sellers.models import Grant
    from sellers.services.tokens import access_token_cache_clear

    spid = Grant.objects.select_related("seller").get(pk=grant_id).seller.selling_partner_id
    out = {}
    before = sandbox_tokens_issued(spid)
    tokens, errors = ask_concurrently(grant_id, 50)
    out["threads"] = {"callers": 50, "lwa": sandbox_tokens_issued(spid) - before, "distinct_tokens": len(set(tokens)),
                      "answers": len(tokens), "errors": errors}

    expire(grant_id)
    access_token_cache_clear()
    before = sandbox_tokens_issued(spid)
    start_at = time.time() + 4
    procs = [subprocess.Popen([sys.executable, __file__, "--flight-worker", str(grant_id), "12", str(start_at)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    tokens, errors = [], []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        if p.returncode:
            errors.append(stderr[-500:])
            continue
        answer = json.loads(stdout.strip().splitlines()[-1])
        tokens += answer["tokens"]
        errors += answer["errors"]
    out["processes"] = {"callers": 48, "lwa": sandbox_tokens_issued(spid) - before, "distinct_tokens": len(set(tokens)),
                        "answers": len(tokens), "errors": errors}
    return out


# --- Report -----------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "✅" if ok else "❌"


def report(hot: dict, sweep: dict, processes: dict, own: float, flight: dict, database: str, server_workers: int,
           load: tuple[float, float]) -> str:
    rows = []
    for name in ("loaded grants", "grants loaded without tokens (in-process cache)", "grant read per call (as spapi_request)"):
        r = hot[name]
        if "read per call" in name:
            target, ok = "≤ 1 query/call, 0 LWA (speed is the read's)", r["lwa"] == 0 and r["queries_per_call"] <= 1
        else:
            target = "≥ 50,000 calls/s, 0 queries, 0 LWA"
            ok = r["lwa"] == 0 and r["queries_per_call"] == 0 and r["calls_per_s"] >= 50_000
        rows.append(f"| {name} | {r['calls_per_s']:,.0f} calls/s | {r['queries_per_call']:.2f} | {r['lwa']} | {target} | {verdict(ok)} |")
    s, q = sweep, processes
    t, p = flight["threads"], flight["processes"]
    postgres = database.startswith("PostgreSQL")
    latency = (
        f"Every request to LWA (the sweep's and the bare POSTs) first waits {LWA_LATENCY * 1000:.0f} ms in the client, "
        "as the round trip to a remote LWA would (`--lwa-latency-ms`).\n"
        if LWA_LATENCY else ""
    )
    footnote = (
        "Here the rule rests on `SELECT … FOR UPDATE` of the grant row (the transaction holds it across the LWA call)."
        if postgres
        else "On SQLite the rule rests on a per-grant lock inside the process and a byte-range file lock across "
        "processes; on PostgreSQL on `SELECT … FOR UPDATE` of the grant row (section tokens-postgresql, and the "
        "`postgres`-marked tests in `tests/test_tokens.py`)."
    )
    return f"""
## Token lifecycle (`bench/bench_tokens.py`{" --database-url …, spconnect on PostgreSQL" if postgres else ""})

spconnect's database: {database}; the local sandbox (LWA) runs in gunicorn ({server_workers} sync workers) on its own SQLite file (WAL).
{latency}Client and sandbox share the machine's cores; load average at start / end: {load[0]:.1f} / {load[1]:.1f} (other work on the machine slows both sides and makes ratios noisy).

### Hot path: {HOT_CALLS:,} `grant_access_token` calls round-robin over {HOT_GRANTS:,} valid grants

| Caller holds | Throughput | SQL queries / call | LWA calls | Target | |
|---|---|---|---|---|---|
{chr(10).join(rows)}

For comparison, a client library caching 10 tokens would have called LWA **{hot["ten_token_cache_lwa_calls"]:,}** times for the same {HOT_CALLS:,} calls.

### Refresh sweep: {s["grants"]:,} due grants against the sandbox LWA over real HTTP, concurrency {s["workers"]}

Two ways to run the sweep at the same concurrency: {s["workers"]} threads in one process (`refresh_tokens
--workers {s["workers"]}`) and {s["workers"]} processes (as django-q2 runs refresh tasks). Each is compared with bare
POSTs of the same requests to the same endpoint made the same way ({s["workers"]} threads, or {s["workers"]} processes
with one thread each). Sweep and bare POSTs alternate in {s["rounds"]} rounds (ABBA order) so that other load on
the machine falls on both; every round refreshes another fifth of the grants.

| Figure | {s["workers"]} threads, one process | {s["workers"]} processes | Target | |
|---|---|---|---|---|
| Wall time | {s["wall"]:.1f} s ({s["grants"] / s["wall"]:,.0f}/s) | {q["wall"]:.1f} s ({q["grants"] / q["wall"]:,.0f}/s) | — | |
| Refreshed (stored, version bumped) | {s["refreshed_in_db"]:,} | {q["refreshed_in_db"]:,} | {s["grants"]:,} | {verdict(s["refreshed_in_db"] == s["grants"] == q["refreshed_in_db"] and s["failed"] == q["failed"] == 0)} |
| LWA calls | {s["lwa"]:,} | {q["lwa"]:,} | = {s["grants"]:,} | {verdict(s["lwa"] == s["grants"] == q["lwa"])} |
| SQL queries per refresh (spconnect's database) | {s["queries_per_refresh"]:.2f} | {q["queries_per_refresh"]:.2f} | ≤ 4 | {verdict(max(s["queries_per_refresh"], q["queries_per_refresh"]) <= 4)} |
| Bare POSTs, same requests, same concurrency | {s["bare"]:.1f} s | {q["bare"]:.1f} s | — | |
| **Sweep time / bare POST time** | **{s["ratio"]:.2f}** | **{q["ratio"]:.2f}** | ≤ 1.3 | {verdict(s["ratio"] <= 1.3)} / {verdict(q["ratio"] <= 1.3)} |
| Client CPU per refresh / per bare POST | {s["cpu_ms_per_refresh"]:.2f} / {s["cpu_ms_per_post"]:.2f} ms | {q["cpu_ms_per_refresh"]:.2f} / {q["cpu_ms_per_post"]:.2f} ms | — | |
| spconnect's own CPU per refresh (LWA's answer canned, no HTTP) | {own:.2f} ms | (the same code) | — | |

Where the ratio comes from: a refresh costs the client its HTTP request (as much as a bare POST)
plus spconnect's own work, measured in the last row: the grant read in batches, the re-read under
the lock, decrypting the refresh token and client secret, encrypting the new access token, and
the conditional UPDATE. {"The client, the sandbox server and PostgreSQL" if postgres else "The client and the sandbox server"} share this machine's
{os.cpu_count()} cores, so every millisecond of client CPU is taken from the server answering the POSTs; with
LWA remote (tens of milliseconds per answer, on Amazon's machines) the same work is a small
share of each refresh. In one process the {s["workers"]} threads also share one interpreter lock, which
the processes do not. `bench_tokens.py --profile` shows where the client's CPU goes.

### Single flight: one expired grant, real HTTP to the sandbox LWA

| Callers | LWA calls | Answers | Distinct tokens | Target | |
|---|---|---|---|---|---|
| 50 threads, one process | {t["lwa"]} | {t["answers"]} | {t["distinct_tokens"]} | 1 LWA call, one token for all | {verdict(t["lwa"] == 1 and t["answers"] == 50 and t["distinct_tokens"] == 1 and not t["errors"])} |
| 4 processes × 12 threads | {p["lwa"]} | {p["answers"]} | {p["distinct_tokens"]} | 1 LWA call, one token for all | {verdict(p["lwa"] == 1 and p["answers"] == 48 and p["distinct_tokens"] == 1 and not p["errors"])} |

{footnote}
"""


# --- Main -----------------------------------------------------------------------------------------


def flight_worker(grant_id: int, threads: int, start_at: float) -> None:
    import django

    django.setup()
    add_lwa_latency()
    tokens, errors = ask_concurrently(grant_id, threads, start_at)
    print(json.dumps({"tokens": tokens, "errors": errors}))


def postgres_recreate(url: str, *, create: bool = True) -> None:
    """Drop (and create) the benchmark's own PostgreSQL database; refuses other names."""
    from urllib.parse import urlparse

    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    if not name.endswith("_bench") or not name.replace("_", "").isalnum():
        raise SystemExit("--database-url must name a database ending in _bench (it is dropped and created).")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("The sandbox server exited during start-up.")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("The sandbox server did not start.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grants", type=int, default=5000, help="Due grants in the refresh sweep (default 5000).")
    parser.add_argument("--workers", type=int, default=4, help="Concurrency of the sweep and of the bare POSTs (default 4).")
    parser.add_argument("--server-workers", type=int, default=4, help="gunicorn workers serving the sandbox (default 4).")
    parser.add_argument("--sqlite-wal", action="store_true",
                        help="Put spconnect's SQLite file in WAL mode (default: SQLite's rollback journal, as shipped).")
    parser.add_argument("--database-url", help="Run spconnect's side on this PostgreSQL database instead (its name must "
                        "end in _bench: it is created afresh and dropped afterwards). Results go to section tokens-postgresql.")
    parser.add_argument("--lwa-latency-ms", type=float, default=0,
                        help="Delay every request to LWA's token endpoint by this much in the client, as the round trip "
                        "to a remote LWA would (default 0: the local sandbox answers in about a millisecond).")
    parser.add_argument("--no-write", action="store_true", help="Print the report instead of writing docs/benchmarks.md.")
    parser.add_argument("--profile", action="store_true",
                        help="Instead of the benchmarks: refresh the due grants in one thread under cProfile and print "
                        "where the client's CPU goes (nothing is written).")
    parser.add_argument("--flight-worker", nargs=3, metavar=("GRANT_ID", "THREADS", "START_AT"), help=argparse.SUPPRESS)
    parser.add_argument("--sweep-worker", metavar="MODE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sweep_worker:
        sweep_worker(args.sweep_worker)
        return
    if args.flight_worker:
        grant_id, threads, start_at = args.flight_worker
        flight_worker(int(grant_id), int(threads), float(start_at))
        return

    if args.lwa_latency_ms:
        global LWA_LATENCY
        LWA_LATENCY = args.lwa_latency_ms / 1000
        os.environ["BENCH_LWA_LATENCY_MS"] = str(args.lwa_latency_ms)  # for the worker processes
    tmp = Path(tempfile.mkdtemp(prefix="spconnect-bench-tokens-"))
    port = free_port()
    os.environ.update(base_env(tmp, port))
    if args.sqlite_wal:
        os.environ["BENCH_CLIENT_WAL"] = "1"
    if args.database_url:
        postgres_recreate(args.database_url)
        os.environ["DATABASE_URL"] = args.database_url
    server = None
    try:
        import django

        django.setup()
        add_lwa_latency()
        from django.core.management import call_command

        started = time.perf_counter()
        call_command("migrate", verbosity=0)
        call_command("migrate", database="sandbox", verbosity=0)
        # The stand-in for Amazon is not what is measured: WAL lets its workers read while one
        # writes, which steadies the baseline. spconnect's own file keeps SQLite's defaults.
        from django.db import connections

        with connections["sandbox"].cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")
        data = make_data(args.grants)
        print(f"set up {args.grants + HOT_GRANTS + 1:,} grants in {time.perf_counter() - started:.1f} s", flush=True)

        server_env = {
            **os.environ,
            "DATABASE_URL": os.environ["BENCH_SANDBOX_DATABASE_URL"],
            "DJANGO_SETTINGS_MODULE": "spconnect.settings",
        }
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("gunicorn")), "spconnect.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", str(args.server_workers), "--log-level", "warning", "--chdir", str(ROOT)],
            env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        wait_for_port(port, server)

        if args.profile:
            profile_sweep(data)
            return
        load_start = os.getloadavg()[0]
        hot = bench_hot_path(data["hot"])
        print("hot path:", json.dumps(hot, default=str), flush=True)
        sweep = bench_sweep(data, args.workers)
        print("sweep (threads):", json.dumps(sweep, default=str), flush=True)
        processes = bench_sweep_processes(data, args.workers)
        print("sweep (processes):", json.dumps(processes, default=str), flush=True)
        own = own_cpu_per_refresh(data)
        print(f"spconnect's own CPU per refresh: {own:.2f} ms", flush=True)
        flight = bench_single_flight(data["flight"])
        print("single flight:", json.dumps(flight, default=str), flush=True)
        if args.database_url:
            database = "PostgreSQL (local, default configuration)"
        elif args.sqlite_wal:
            database = "SQLite file in WAL mode"
        else:
            database = "SQLite file with its default rollback journal (as shipped)"
        markdown = report(hot, sweep, processes, own, flight, database, args.server_workers, (load_start, os.getloadavg()[0]))
        if args.no_write:
            print(markdown)
        else:
            from _report import write_section

            section = "tokens-postgresql" if args.database_url else "tokens"
            write_section(section, markdown)
            print(f"wrote docs/benchmarks.md (section {section})")
        failures = [e for e in flight["threads"]["errors"] + flight["processes"]["errors"]]
        if failures:
            raise SystemExit(f"single flight errors: {failures[:3]}")
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(tmp, ignore_errors=True)
        if args.database_url:
            from django.db import connections

            connections.close_all()
            postgres_recreate(args.database_url, create=False)


if __name__ == "__main__":
    main()
