"""/healthz for load balancers and orchestrators: 200 when the database and the task broker
answer, 503 otherwise. It names which one failed, never how (no hosts, no credentials).

With the database up it also reports, as detail that never changes the status, how many grants
lost a scheduled refresh task in the last hour: a worker or a broker losing tasks is not an
outage of this process, but must not go unnoticed."""

from __future__ import annotations

import logging
import threading

import redis
from django.conf import settings
from django.db import DatabaseError, connections
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from sellers.selectors import REFRESH_LOST_PERIOD, grants_refresh_lost_count

logger = logging.getLogger(__name__)

_redis_clients: dict[str, redis.Redis] = {}
_redis_lock = threading.Lock()


def _redis_client(url: str) -> redis.Redis:
    # One pooled client per URL, kept for the process: a probe every few seconds must not open a
    # new connection each time.
    with _redis_lock:
        client = _redis_clients.get(url)
        if client is None:
            # Short timeouts (REDIS_*_TIMEOUT): a probe that hangs is as bad as a failing one, and
            # balancers give up at ~5 s.
            client = redis.Redis.from_url(
                url, socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT, socket_timeout=settings.REDIS_SOCKET_TIMEOUT
            )
            _redis_clients[url] = client
        return client


def database_check(*, alias: str = "default") -> bool:
    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except DatabaseError as exc:
        logger.warning("Health check: database %s unreachable (%s)", alias, type(exc).__name__)
        # Drop the broken connection so the next request reconnects instead of reusing it.
        connection.close()
        return False


def broker_check() -> bool:
    """The django-q2 broker: Redis when configured, else the ORM queue table in the database."""
    conf = settings.Q_CLUSTER
    url = conf.get("redis")
    if url:
        if not isinstance(url, str):
            return False  # a dict of Redis options is not something this project configures
        try:
            return bool(_redis_client(url).ping())
        except redis.RedisError as exc:
            logger.warning("Health check: Redis broker unreachable (%s)", type(exc).__name__)
            return False
    from django_q.models import OrmQ

    alias = conf.get("orm", "default")
    try:
        OrmQ.objects.using(alias).exists()
    except DatabaseError as exc:
        logger.warning("Health check: ORM broker table unreachable (%s)", type(exc).__name__)
        connections[alias].close()
        return False
    return True


def refresh_lost_count() -> int | None:
    """Grants whose scheduled refresh task was lost in the last hour; None when unreadable."""
    try:
        return grants_refresh_lost_count(since=timezone.now() - REFRESH_LOST_PERIOD)
    except DatabaseError as exc:
        logger.warning("Health check: lost refresh tasks not counted (%s)", type(exc).__name__)
        return None


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": database_check(), "broker": broker_check()}
    healthy = all(checks.values())
    body: dict[str, object] = {
        "status": "ok" if healthy else "unavailable",
        "checks": {name: "ok" if ok else "unreachable" for name, ok in checks.items()},
    }
    lost = refresh_lost_count() if checks["database"] else None
    if lost is not None:
        body["detail"] = {"refresh_tasks_lost_last_hour": lost}
    return JsonResponse(body, status=200 if healthy else 503)
