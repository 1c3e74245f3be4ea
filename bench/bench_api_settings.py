"""Settings for bench_api.py's servers and its own process: the project's settings, plus

* `bench_api_urls`: the project's URLs and, beside them, a trivial authenticated JSON view (the
  API's own key check, nothing else) that the token endpoint is compared with;
* a response header counting each request's SQL queries (DEBUG is off: no query log);
* with `BENCH_LWA_LATENCY_MS`, that much added to every answer of the sandbox's LWA token
  endpoint, as the round trip to a remote LWA would;
* the sandbox's database as a second alias, so that the benchmark can fill it.
"""

from spconnect.settings import *  # noqa: F403
from spconnect.settings import DATABASES, MIDDLEWARE, env

ROOT_URLCONF = "bench_api_urls"
MIDDLEWARE = ["bench_api_urls.lwa_latency", "bench_api_urls.count_queries", *MIDDLEWARE]
BENCH_LWA_LATENCY_SECONDS = env.float("BENCH_LWA_LATENCY_MS", default=0) / 1000

if env.str("BENCH_SANDBOX_DATABASE_URL", default=""):
    DATABASES["sandbox"] = env.db("BENCH_SANDBOX_DATABASE_URL")
    DATABASES["sandbox"].setdefault("OPTIONS", {}).setdefault("timeout", 20)
