"""Settings for bench_proxy.py's servers: bench_api's (query-count header, LWA latency, the
sandbox's database as a second alias), plus, with `BENCH_SPAPI_LATENCY_MS`, that much added to
every answer of the sandbox's SP-API, as the round trip to Amazon's SP-API hosts would."""

import time

from bench_api_settings import *  # noqa: F403
from bench_api_settings import MIDDLEWARE, env

BENCH_SPAPI_LATENCY_SECONDS = env.float("BENCH_SPAPI_LATENCY_MS", default=0) / 1000
MIDDLEWARE = ["bench_proxy_settings.spapi_latency", *MIDDLEWARE]


def spapi_latency(get_response):
    delay = BENCH_SPAPI_LATENCY_SECONDS

    def middleware(request):
        if delay and request.path.startswith("/sandbox/spapi/"):
            time.sleep(delay)
        return get_response(request)

    return middleware
