#!/usr/bin/env bash
# Serve the app and a background-task worker together; Ctrl-C stops both.
set -euo pipefail
host=${1:-127.0.0.1}
port=${2:-8000}
py=.venv/bin/python
# `worker`, not `qcluster`: a Ctrl-C or SIGTERM reaching every process of the group stops it
# cleanly instead of hanging (sellers/management/commands/worker.py).
$py manage.py worker &
worker=$!
trap 'kill $worker 2>/dev/null || true; wait $worker 2>/dev/null || true' EXIT INT TERM
echo "Serving http://$host:$port/ (admin: /admin/, local Amazon sandbox: /sandbox/). Ctrl-C to stop."
$py manage.py runserver "$host:$port"
