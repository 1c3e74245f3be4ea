#!/usr/bin/env python
"""HTTP load for the benchmarks: client processes × keep-alive connections replay a list of
requests against one port, all starting at the same moment, and two sides are compared in ABBA
rounds so that drift on a shared machine falls on both.

A request is `[method, path, headers, body or None]`. Each answer's status is counted, and the
`X-Bench-Queries` header the benchmarks' settings add (SQL queries the request ran; -1 when
absent). With `expect`, an answer 200 whose body lacks that text counts as status -200, so a
benchmark cannot measure fast wrong answers.

The worker processes run this file (`python _http_load.py`, the job on standard input) and use
the standard library only: the clients cost as little CPU as possible on a machine they share
with the servers they measure.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable

START_DELAY_SECONDS = 3.0  # every worker process is up and waiting by then


def load_worker(job: dict) -> dict:
    """Send `job["requests"]` over `job["threads"]` keep-alive connections from `job["start_at"]`."""
    statuses: Counter = Counter()
    queries: Counter = Counter()
    lock = threading.Lock()
    expect = job["expect"].encode() if job.get("expect") else None

    def run(share: list) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", job["port"], timeout=60)
        mine_status: Counter = Counter()
        mine_queries: Counter = Counter()
        for method, path, headers, body in share:
            for attempt in range(3):
                try:
                    conn.request(method, path, body=body.encode() if body is not None else None, headers=headers)
                    response = conn.getresponse()
                    content = response.read()
                    break
                except (http.client.HTTPException, ConnectionError, OSError):
                    # gunicorn closed the kept-alive connection (idle, or a worker's max-requests restart).
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", job["port"], timeout=60)
                    if attempt == 2:
                        raise
            wrong = response.status == 200 and expect is not None and expect not in content
            mine_status[-200 if wrong else response.status] += 1
            mine_queries[int(response.getheader("X-Bench-Queries", "-1"))] += 1
        conn.close()
        with lock:
            statuses.update(mine_status)
            queries.update(mine_queries)

    shares = [job["requests"][i :: job["threads"]] for i in range(job["threads"])]
    threads = [threading.Thread(target=run, args=(share,)) for share in shares]
    ready = time.time()
    while time.time() < job["start_at"]:
        time.sleep(0.001)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"ready": ready, "end": time.time(), "statuses": dict(statuses), "queries": {str(k): v for k, v in queries.items()}}


def load_round(*, port: int, requests: list, processes: int, threads: int, expect: str | None = None) -> dict:
    """One round: `requests` split over `processes` × `threads` connections. Returns its wall time
    (from the common start to the last answer), calls, and Counters of statuses and queries."""
    start_at = time.time() + START_DELAY_SECONDS
    procs = [
        subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    for i, proc in enumerate(procs):
        job = {"port": port, "requests": requests[i::processes], "threads": threads, "start_at": start_at, "expect": expect}
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(job))
        proc.stdin.close()
    results = []
    for proc in procs:
        assert proc.stdout is not None and proc.stderr is not None
        out, err = proc.stdout.read(), proc.stderr.read()
        if proc.wait(timeout=900):
            raise SystemExit(f"a load worker failed: {err[-1500:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    if any(r["ready"] > start_at for r in results):
        raise SystemExit("a load worker started late; raise START_DELAY_SECONDS")
    statuses: Counter = Counter()
    queries: Counter = Counter()
    for r in results:
        statuses.update({int(k): v for k, v in r["statuses"].items()})
        queries.update({int(k): v for k, v in r["queries"].items()})
    return {"wall": max(r["end"] for r in results) - start_at, "calls": len(requests), "statuses": statuses, "queries": queries}


def abba(
    sides: dict[str, tuple[int, list]],
    *,
    rounds: int,
    processes: int,
    threads: int,
    expect: str | None = None,
    warm_up: int = 200,
    on_round: Callable[[str, dict], None] | None = None,
) -> dict[str, dict]:
    """Compare two sides, `{name: (port, requests)}`, in `rounds` rounds each, ABBA order (the
    first named side starts). Each side is warmed up first (gunicorn's workers import the app on
    their first request). Per side: wall, calls, per_s, ok (answers 200 as expected), statuses,
    queries (Counter), queries_mean, queries_max, and round_walls (seconds, in order)."""
    first, second = list(sides)
    for port, requests in sides.values():
        load_round(port=port, requests=requests[:warm_up], processes=processes, threads=threads, expect=expect)
    totals = {name: {"wall": 0.0, "calls": 0, "statuses": Counter(), "queries": Counter(), "round_walls": []} for name in sides}
    offsets = dict.fromkeys(sides, 0)
    order: list[str] = []
    for r in range(rounds):
        order += [first, second] if r % 2 == 0 else [second, first]
    for name in order:
        port, requests = sides[name]
        per_round = len(requests) // rounds
        start = offsets[name]
        offsets[name] += per_round
        result = load_round(port=port, requests=requests[start : start + per_round], processes=processes, threads=threads, expect=expect)
        total = totals[name]
        total["wall"] += result["wall"]
        total["calls"] += result["calls"]
        total["statuses"].update(result["statuses"])
        total["queries"].update(result["queries"])
        total["round_walls"].append(result["wall"])
        if on_round is not None:
            on_round(name, result)
    for total in totals.values():
        total["per_s"] = total["calls"] / total["wall"]
        total["ok"] = total["statuses"].get(200, 0)
        total["queries_mean"] = sum(q * n for q, n in total["queries"].items()) / total["calls"]
        total["queries_max"] = max(total["queries"])
    return totals


def print_round(name: str, result: dict) -> None:
    print(f"  {name}: {result['calls'] / result['wall']:,.0f} calls/s", flush=True)


if __name__ == "__main__":
    print(json.dumps(load_worker(json.loads(sys.stdin.read()))))
