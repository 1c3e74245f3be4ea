"""URLs and middleware of bench_api.py's servers (settings: bench_api_settings.py)."""

from __future__ import annotations

import time
from contextlib import ExitStack

from django.conf import settings
from django.db import connections
from django.urls import path
from ninja import NinjaAPI

from api.auth import KeyAuth
from api.errors import install_handlers
from api.models import Permission
from spconnect.urls import urlpatterns as project_urlpatterns

# The baseline: what every API call costs before its own work (routing, the key's lookup, its rate
# limit and permission, a JSON answer), with the permission the token endpoint needs.
bench_api = NinjaAPI(urls_namespace="bench-api", docs_url=None, openapi_url=None)
install_handlers(bench_api)


@bench_api.get("/ping", auth=KeyAuth(Permission.TOKENS_READ))
def ping(request):
    return {"ok": True, "tenant": request.auth.tenant_id}


urlpatterns = [path("bench-api/v1/", bench_api.urls), *project_urlpatterns]


def count_queries(get_response):
    """`X-Bench-Queries`: the SQL statements this request ran, on every database."""

    def middleware(request):
        count = 0

        def counted(execute, sql, params, many, context):
            nonlocal count
            count += 1
            return execute(sql, params, many, context)

        with ExitStack() as stack:
            for alias in connections:
                stack.enter_context(connections[alias].execute_wrapper(counted))
            response = get_response(request)
        response["X-Bench-Queries"] = str(count)
        return response

    return middleware


def lwa_latency(get_response):
    """The sandbox's LWA token endpoint answers BENCH_LWA_LATENCY_MS later, as a remote LWA would."""
    delay = settings.BENCH_LWA_LATENCY_SECONDS

    def middleware(request):
        if delay and request.path == "/sandbox/auth/o2/token":
            time.sleep(delay)
        return get_response(request)

    return middleware
