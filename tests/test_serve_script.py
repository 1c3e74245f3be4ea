"""`bin/serve.sh all` (make serve) stops, web and workers, on SIGTERM to the script alone."""

from __future__ import annotations

import os
import secrets
import sys

import requests

from .test_make_run import stop_with_sigterm_to_the_script
from .test_no_secrets_in_server_logs import Server, free_port


def test_serve_all_stops_web_and_workers_on_sigterm_to_the_script(tmp_path, sqlite_file_db):
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "PYTHON": sys.executable,
        "SPCONNECT_ENV_FILE": "/nonexistent",
        # Production settings as they are, so that the release step's `check --deploy` passes.
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEY": "iyHox1r1y7hesdCbWh1EvZHFwu4IN1JgMD6ez28BcFM=",
        "SITE_URL": "https://connect.example.com",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SILENCED_SYSTEM_CHECKS": "spconnect.W001",  # one web process: rate limits per process are fine
        "DATABASE_URL": sqlite_file_db,
        "STATIC_ROOT": str(tmp_path / "static"),
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "Q_WORKERS": "1",
    }
    server = Server(["bash", "bin/serve.sh", "all"], env, tmp_path, port)
    try:
        server.wait_until_listening(timeout=120)
        # /healthz answers over plain HTTP (exempt from the HTTPS redirect).
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code in (200, 503)
        server.wait_for_lines("running.", timeout=60)  # the task cluster is up
        assert "running." in server.output(), server.output()[-2000:]
    finally:
        stop_with_sigterm_to_the_script(server)
    assert "has stopped." in server.output()  # the cluster stopped cleanly, not killed
