#!/usr/bin/env python
"""The agency API's speed; results go to docs/benchmarks.md, section "api".

* Token endpoint: `POST /api/v1/connections/{id}/access-token` for valid tokens, round-robin over
  1,000 connections, on gunicorn configured as `bin/serve.sh web` configures it, compared with a
  trivial authenticated JSON view on the same server (the API's key check, then `{"ok": true}`;
  bench_api_urls.py) in alternating rounds (ABBA). Counts LWA calls (at the sandbox) and SQL
  queries per request (a response header the benchmark's settings add).
* python-amazon-sp-api side by side: 10,000 SP-API calls (getMarketplaceParticipations) over
  1,000 sellers against the sandbox, whose LWA answers 20 ms late (`--lwa-latency-ms`): first
  with refresh tokens, as the library ships (its own token cache), then through
  `spconnect_client.sp_api_auth`. Both start cold: no access token cached anywhere, spconnect's
  stored ones expired. Counts LWA calls, calls/s, and checks every answer is the right seller's.

Two servers run on free 127.0.0.1 ports, each on its own SQLite file in a temporary directory
(spconnect's, and the sandbox's: Amazon is not in our database), removed afterwards.

    .venv/bin/python bench/bench_api.py [--quick]
"""

from __future__ import annotations

import argparse
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
from collections import Counter
from datetime import timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH), str(ROOT / "clients" / "python")]

from _http_load import abba, print_round  # noqa: E402

# gunicorn as `bin/serve.sh web` starts it with its defaults (WEB_CONCURRENCY=2, WEB_THREADS=8, …).
SERVE_WEB_ARGS = [
    "--config", "python:spconnect.gunicorn_conf",
    "--workers", "2", "--threads", "8", "--worker-class", "gthread",
    "--timeout", "30", "--graceful-timeout", "20", "--keep-alive", "5",
    "--max-requests", "2000", "--max-requests-jitter", "200",
    "--forwarded-allow-ips", "127.0.0.1",
]
PING_PATH = "/bench-api/v1/ping"


def serve_web_shape() -> str:
    """'2 gthread workers × 8 threads', as SERVE_WEB_ARGS says, for the reports."""
    workers = SERVE_WEB_ARGS[SERVE_WEB_ARGS.index("--workers") + 1]
    threads = SERVE_WEB_ARGS[SERVE_WEB_ARGS.index("--threads") + 1]
    return f"{workers} gthread workers × {threads} threads"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(tmp: Path) -> dict[str, str]:
    from cryptography.fernet import Fernet

    return {
        "DEBUG": "false",  # production settings: no query log, no debug pages
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SPCONNECT_ENV_FILE": "/nonexistent",
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": "",
        "DATABASE_URL": f"sqlite:///{tmp / 'spconnect.sqlite3'}",
        "BENCH_SANDBOX_DATABASE_URL": f"sqlite:///{tmp / 'sandbox.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "bench_api_settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)]),
    }


def stop_servers(servers: list[subprocess.Popen]) -> None:
    """Stop each server still running: SIGTERM, then SIGKILL after 15 s."""
    for server in servers:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


def wait_for_port(port: int, proc: subprocess.Popen, name: str, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"The {name} server exited during start-up: {proc.stderr.read()[-1500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"The {name} server did not start.")


# --- Data ------------------------------------------------------------------------------------------


def make_tenant(slug: str):
    from sellers.models import Tenant

    values = dict(slug=slug, name=f"Bench {slug}", application_id=f"amzn1.sellerapps.app.bench-{slug}",
                  client_id=f"amzn1.application-oa2-client.bench-{slug}", client_secret="bench-secret-" + secrets.token_hex(8))
    tenant = Tenant.objects.create(**values)
    Tenant.objects.using("sandbox").create(**values)  # the app registration "Amazon" knows
    return tenant


def make_connections(tenant, count: int, *, expires_in: int, prefix: str) -> list[dict]:
    """`count` active sellers with grants (and their authorizations at the sandbox)."""
    from django.utils import timezone

    from sandbox.models import SandboxAuthorization
    from sellers.hashing import token_hash
    from sellers.models import Grant, Seller

    now = timezone.now()
    refresh = [f"Atzr|bench-{prefix}-{i}-{secrets.token_urlsafe(12)}" for i in range(count)]
    sellers = Seller.objects.bulk_create(
        [Seller(tenant=tenant, name=f"{prefix} {i}", selling_partner_id=f"A{prefix.upper()}{i:06d}", region="na",
                status="active") for i in range(count)], batch_size=500)
    Grant.objects.bulk_create(
        [Grant(seller=s, refresh_token=r, access_token=f"Atza|bench-{prefix}-{i}-{secrets.token_urlsafe(12)}",
               authorized_at=now, granted_scopes=[], scopes_confirmed=True,
               access_token_expires_at=now + timedelta(seconds=expires_in), last_refreshed_at=now)
         for i, (s, r) in enumerate(zip(sellers, refresh, strict=True))], batch_size=500)
    SandboxAuthorization.objects.using("sandbox").bulk_create(
        [SandboxAuthorization(client_id=tenant.client_id, selling_partner_id=s.selling_partner_id, region="na", scopes=[],
                              redirect_uri=tenant.effective_redirect_uri, code_hash=secrets.token_hex(32),
                              code_expires_at=now, code_used_at=now, refresh_token_hash=token_hash(r))
         for s, r in zip(sellers, refresh, strict=True)], batch_size=500)
    return [{"id": str(s.public_id), "spid": s.selling_partner_id, "refresh_token": r} for s, r in zip(sellers, refresh, strict=True)]


def api_key(tenant) -> str:
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("api_key", "create", "--tenant", tenant.slug, "--name", "bench",
                 "--permissions", "connections:read,tokens:read", stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def lwa_calls() -> int:
    """Access tokens the sandbox's LWA has issued so far: one per LWA call that succeeded."""
    from sandbox.models import SandboxAccessToken

    return SandboxAccessToken.objects.using("sandbox").count()


# --- Load for the token endpoint --------------------------------------------------------------------------


def bench_token_endpoint(*, port: int, key: str, connections: list[dict], calls: int, rounds: int, processes: int,
                         threads: int) -> dict:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", "Accept": "application/json"}
    sides = {
        "token": (port, [["POST", f"/api/v1/connections/{connections[i % len(connections)]['id']}/access-token", headers, "{}"]
                         for i in range(calls)]),
        "ping": (port, [["GET", PING_PATH, headers, None]] * calls),
    }
    lwa_before = lwa_calls()
    totals: dict = abba(sides, rounds=rounds, processes=processes, threads=threads, on_round=print_round)
    totals["lwa"] = lwa_calls() - lwa_before  # warm-up included: valid tokens need none
    for name in sides:
        totals[name]["rounds"] = [calls // rounds / wall for wall in totals[name]["round_walls"]]
    totals["ratio"] = totals["token"]["per_s"] / totals["ping"]["per_s"]
    return totals


# --- python-amazon-sp-api side by side ------------------------------------------------------------------


def bench_sp_api(*, sandbox_port: int, web_url: str, key: str, tenant, connections: list[dict], calls: int,
                 threads: int) -> dict:
    import httpx
    import sp_api.auth.access_token_client as sp_auth_module
    import sp_api.base.client as sp_client_module
    from sp_api.api import Sellers
    from sp_api.auth import AccessTokenClient
    from sp_api.base import Marketplaces
    from sp_api.base._transport_httpx import HttpxTransport

    import spconnect_client
    from spconnect_client import sp_api as adapter

    sandbox = f"127.0.0.1:{sandbox_port}"
    endpoint = f"http://{sandbox}/sandbox/spapi/na"
    local = threading.local()

    class SandboxTransport(HttpxTransport):
        """python-amazon-sp-api sends `host: endpoint[8:]` (https:// assumed): fix it for plain http."""

        def request(self, method, url, *, headers=None, **kwargs):
            return super().request(method, url, headers={**(headers or {}), "host": sandbox}, **kwargs)

    def transport(**kwargs):
        # python-amazon-sp-api builds two httpx clients per API object (37 ms each here, loading
        # CA certificates), which would swamp what is measured: both sides share one per thread.
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=30)
        return SandboxTransport(client=local.client)

    sp_client_module.HttpxTransport = transport
    sp_auth_module.HttpxTransport = transport

    class SandboxLwa(AccessTokenClient):
        """python-amazon-sp-api's own token client (and cache), sent to the sandbox's LWA."""

        scheme = "http://"
        host = sandbox
        path = "/sandbox/auth/o2/token"

    credentials = {"lwa_app_id": tenant.client_id, "lwa_client_secret": tenant.client_secret}

    def shipped(c: dict):
        return Sellers(refresh_token=c["refresh_token"], credentials=credentials, marketplace=Marketplaces.US,
                       auth_token_client_class=SandboxLwa)

    def through_spconnect(c: dict):
        auth = spconnect_client.sp_api_auth(base_url=web_url, api_key=key, connection_id=c["id"])
        return Sellers(credentials=spconnect_client.SP_API_CREDENTIALS, marketplace=Marketplaces.US,
                       auth_token_client_class=auth)

    token_requests = Counter()
    shared = adapter._shared_client(web_url, key, (5.0, 30.0))
    shared._session.hooks["response"].append(lambda r, *a, **k: token_requests.update([1]))

    def run(make) -> dict:
        errors: Counter = Counter()
        first_errors: dict[str, str] = {}
        wrong = Counter()
        lock = threading.Lock()

        def work(indexes):
            for i in indexes:
                c = connections[i % len(connections)]
                try:
                    api = make(c)
                    api.endpoint = endpoint
                    answer = api.get_marketplace_participation()
                    if answer.payload[0]["storeName"] != f"Sandbox store {c['spid']}":
                        with lock:
                            wrong.update([1])
                except Exception as exc:  # noqa: BLE001 — counted and reported, whatever the library raises
                    with lock:
                        errors.update([type(exc).__name__])
                        first_errors.setdefault(type(exc).__name__, str(exc)[:160])

        shares = [range(t, calls, threads) for t in range(threads)]
        workers = [threading.Thread(target=work, args=(share,)) for share in shares]
        before = lwa_calls()
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        wall = time.perf_counter() - start
        return {"wall": wall, "per_s": calls / wall, "lwa": lwa_calls() - before, "errors": dict(errors),
                "first_errors": first_errors, "wrong": wrong[1]}

    sp_auth_module.cache.clear()
    shipped_result = run(shipped)
    print(f"  python-amazon-sp-api as shipped: {json.dumps(shipped_result)}", flush=True)
    adapter.TOKENS.clear()
    ours = run(through_spconnect)
    ours["token_requests"] = token_requests[1]
    print(f"  through sp_api_auth: {json.dumps(ours)}", flush=True)
    return {"shipped": shipped_result, "ours": ours, "cache_size": sp_auth_module.cache.maxsize}


# --- Report -----------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "✅" if ok else "❌"


def report(a: dict, b: dict, *, args, load: tuple[float, float], sellers: int) -> str:
    t, p = a["token"], a["ping"]
    within = sum(n for q, n in t["queries"].items() if 0 <= q <= 2)
    extra = t["calls"] - within
    queries_cell = (f"{within:,} of {t['calls']:,} calls; {extra} with a third: the key's `last_used_at`, "
                    "written at most once a minute")
    s, o = b["shipped"], b["ours"]

    error_notes = "\n" if s["errors"] or o["errors"] else ""
    error_notes += "".join(
        f"\n{label}: calls that raised, first of each: "
        + "; ".join(f"`{name}: {message}`" for name, message in r["first_errors"].items()) + "."
        for label, r in (("As shipped", s), ("Through `sp_api_auth`", o)) if r["errors"])
    if s["errors"]:
        error_notes += ("\n(python-amazon-sp-api keeps its tokens in one cachetools `TTLCache` for the whole process, "
                        "which its threads read and write without a lock.)")

    def rounds(side: dict) -> str:
        return ", ".join(f"{x:,.0f}" for x in side["rounds"])

    def speed(r: dict) -> str:
        return f"{r['per_s']:,.0f} calls/s ({r['wall']:.1f} s)"

    def errors(r: dict) -> str:
        return f"{sum(r['errors'].values())} {json.dumps(r['errors'])}" if r["errors"] else "0"
    scale = "" if not args.quick else " (`--quick`: a smaller run than the full one)"
    return f"""
## Agency API (`bench/bench_api.py`{" --quick" if args.quick else ""}){scale}

spconnect's web server is gunicorn with the arguments `bin/serve.sh web` gives it ({serve_web_shape()},
max-requests 2000), production settings (`DEBUG` off), SQLite; the local
sandbox (LWA and SP-API) is a second gunicorn on its own SQLite file. Clients, both servers and
the sandbox share this machine's {os.cpu_count()} cores; load average at start / end: {load[0]:.1f} / {load[1]:.1f}.

### Token endpoint: valid tokens, round-robin over {len(a['connections']):,} connections

`POST /api/v1/connections/{{id}}/access-token` against a trivial authenticated JSON view on the
same server (the API's key check, rate limit and permission, then `{{"ok": true}}`), {args.processes}
client processes × {args.threads} keep-alive connections, {args.rounds} rounds each in ABBA order
(calls/s per round, in order: access token {rounds(t)}; trivial view {rounds(p)}).

| Endpoint | Calls | Answered 200 | Throughput | SQL queries / call (mean, max) |
|---|---|---|---|---|
| trivial authenticated view | {p['calls']:,} | {p['ok']:,} | {p['per_s']:,.0f} calls/s | {p['queries_mean']:.3f}, {p['queries_max']} |
| access token | {t['calls']:,} | {t['ok']:,} | {t['per_s']:,.0f} calls/s | {t['queries_mean']:.3f}, {t['queries_max']} |

| Target | Measured | |
|---|---|---|
| 0 LWA calls for valid tokens | {a['lwa']} | {verdict(a['lwa'] == 0)} |
| ≤ 2 SQL queries per call | {queries_cell} | {verdict(extra <= max(3, t['calls'] // 1000))} |
| throughput ≥ 0.7 × the trivial view's | **{a['ratio']:.2f}** | {verdict(a['ratio'] >= 0.7)} |

The two queries are the key (by its prefix) and the connection with its grant; the token is
decrypted and answered as stored.

### python-amazon-sp-api: {args.spapi_calls:,} SP-API calls over {sellers:,} sellers, LWA answering {args.lwa_latency_ms:.0f} ms late

Each call builds the library's `Sellers` client for its seller and calls
`get_marketplace_participation()` against the sandbox's SP-API, {args.sp_api_threads} threads, sellers
round-robin; every answer is checked to be that seller's. As shipped, the library refreshes with
the seller's refresh token through its own `AccessTokenClient` and module-wide cache
({b['cache_size']} tokens); through `sp_api_auth` it asks spconnect, which stores each seller's token
and refreshes it with LWA when needed. Both start cold (no token cached; spconnect's stored tokens
expired). Both sides share one httpx client per thread (the library builds two per API object, at
about 37 ms each here, which would swamp both runs); `host` is set for the plain-http sandbox.
The sandbox's LWA works on the same cores as everything else (Amazon's would not), so the
library as shipped is slowed by its LWA calls twice: their latency, and LWA's own CPU here.

| | LWA calls | Token requests to spconnect | Throughput | Errors | Wrong seller |
|---|---|---|---|---|---|
| python-amazon-sp-api as shipped | **{s['lwa']:,}** | — | {speed(s)} | {errors(s)} | {s['wrong']} |
| through `sp_api_auth` | **{o['lwa']:,}** | {o['token_requests']:,} | {speed(o)} | {errors(o)} | {o['wrong']} |

Through `sp_api_auth`: {s['lwa'] / max(1, o['lwa']):.0f}× fewer LWA calls, {o['per_s'] / s['per_s']:.2f}× the calls per second.
With more sellers than its cache holds, the library as shipped goes back to LWA on almost every
call, each paying LWA's round trip; through spconnect each seller costs one LWA refresh an hour
(made by spconnect) and one token request per process, then every call reuses the cached token.{error_notes}
"""


# --- Main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="A smaller run: 100 sellers, 1,000 SP-API calls, "
                        "2,000 calls per side on the token endpoint (writes its figures too, marked --quick).")
    parser.add_argument("--sellers", type=int, help="Sellers in the python-amazon-sp-api comparison (default 1000).")
    parser.add_argument("--spapi-calls", type=int, help="SP-API calls per side in that comparison (default 10000).")
    parser.add_argument("--connections", type=int, default=1000, help="Connections the token endpoint is asked for (default 1000).")
    parser.add_argument("--calls", type=int, help="Calls per side on the token endpoint (default 8000).")
    parser.add_argument("--rounds", type=int, default=4, help="Rounds per side on the token endpoint, ABBA order (default 4).")
    parser.add_argument("--processes", type=int, default=2, help="Client processes for the token endpoint (default 2).")
    parser.add_argument("--threads", type=int, default=4, help="Threads per client process (default 4).")
    parser.add_argument("--sp-api-threads", type=int, default=8, help="Threads in the python-amazon-sp-api comparison (default 8).")
    parser.add_argument("--lwa-latency-ms", type=float, default=20, help="Added to each answer of the sandbox's LWA (default 20).")
    parser.add_argument("--no-write", action="store_true", help="Print the report instead of writing docs/benchmarks.md.")
    args = parser.parse_args()
    args.sellers = args.sellers or (100 if args.quick else 1000)
    args.spapi_calls = args.spapi_calls or (1000 if args.quick else 10_000)
    args.calls = args.calls or (2000 if args.quick else 8000)
    if args.quick:
        args.connections = min(args.connections, 100)

    tmp = Path(tempfile.mkdtemp(prefix="spconnect-bench-api-"))
    web_port, sandbox_port = free_port(), free_port()
    web_url, sandbox_url = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{sandbox_port}"
    env = base_env(tmp)
    os.environ.update(env)
    os.environ.update({"SPAPI_SANDBOX": "false", "SITE_URL": web_url})
    servers: list[subprocess.Popen] = []
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections as db

        started = time.perf_counter()
        call_command("migrate", verbosity=0)
        call_command("migrate", database="sandbox", verbosity=0)
        with db["sandbox"].cursor() as cursor:  # the stand-in for Amazon is not what is measured
            cursor.execute("PRAGMA journal_mode=WAL")
        hot_tenant, side_tenant = make_tenant("hot"), make_tenant("sides")
        hot = make_connections(hot_tenant, args.connections, expires_in=3600, prefix="hot")
        sides = make_connections(side_tenant, args.sellers, expires_in=-60, prefix="sides")
        hot_key, side_key = api_key(hot_tenant), api_key(side_tenant)
        db.close_all()
        print(f"set up {args.connections + args.sellers:,} connections in {time.perf_counter() - started:.1f} s", flush=True)

        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        sandbox_env = {**os.environ, "DATABASE_URL": env["BENCH_SANDBOX_DATABASE_URL"], "SPAPI_SANDBOX": "true",
                       "SPAPI_SANDBOX_ALLOW_WITHOUT_DEBUG": "true", "SITE_URL": sandbox_url,
                       "BENCH_LWA_LATENCY_MS": str(args.lwa_latency_ms)}
        servers.append(subprocess.Popen(
            [gunicorn, "spconnect.wsgi:application", "--bind", f"127.0.0.1:{sandbox_port}", "--workers", "2",
             "--threads", "16", "--worker-class", "gthread", "--log-level", "warning", "--chdir", str(ROOT)],
            env=sandbox_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        web_env = {**os.environ, "SPAPI_LWA_TOKEN_URL": f"{sandbox_url}/sandbox/auth/o2/token",
                   **{f"SPAPI_API_HOST_{r.upper()}": f"{sandbox_url}/sandbox/spapi/{r}" for r in ("na", "eu", "fe")},
                   # The per-key limit stays on (its cost is part of every call) but never trips.
                   "SPCONNECT_API_RATE_LIMIT_REQUESTS": "100000000"}
        servers.append(subprocess.Popen(
            [gunicorn, "spconnect.wsgi:application", *SERVE_WEB_ARGS, "--bind", f"127.0.0.1:{web_port}", "--chdir", str(ROOT)],
            env=web_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        wait_for_port(sandbox_port, servers[0], "sandbox")
        wait_for_port(web_port, servers[1], "spconnect")

        load_start = os.getloadavg()[0]
        print("token endpoint vs trivial authenticated view:", flush=True)
        a = bench_token_endpoint(port=web_port, key=hot_key, connections=hot, calls=args.calls, rounds=args.rounds,
                                 processes=args.processes, threads=args.threads)
        a["connections"] = hot
        print(f"  ratio {a['ratio']:.2f}, LWA calls {a['lwa']}, queries/call {a['token']['queries_mean']:.3f}", flush=True)
        print("python-amazon-sp-api side by side:", flush=True)
        b = bench_sp_api(sandbox_port=sandbox_port, web_url=web_url, key=side_key, tenant=side_tenant, connections=sides,
                         calls=args.spapi_calls, threads=args.sp_api_threads)
        markdown = report(a, b, args=args, load=(load_start, os.getloadavg()[0]), sellers=args.sellers)
        if args.no_write:
            print(markdown)
        else:
            from _report import write_section

            write_section("api", markdown)
            print("wrote docs/benchmarks.md (section api)")
        failures = []
        if a["token"]["ok"] != a["token"]["calls"] or a["ping"]["ok"] != a["ping"]["calls"]:
            failures.append(f"token endpoint answers: {dict(a['token']['statuses'])}, trivial view: {dict(a['ping']['statuses'])}")
        for name in ("shipped", "ours"):
            if b[name]["wrong"]:
                failures.append(f"{name}: {b[name]['wrong']} answers for the wrong seller")
        if failures:
            raise SystemExit("; ".join(failures))
    finally:
        stop_servers(servers)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
