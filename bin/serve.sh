#!/usr/bin/env bash
# Run spconnect in production: gunicorn for the web, django-q2's cluster for the workers (manage.py worker).
#
#   bin/serve.sh release   once per deploy: migrate, collect static files, schedules, check --deploy
#   bin/serve.sh web       one web process group (gunicorn); run it on every web machine
#   bin/serve.sh worker    one task worker group (manage.py worker); run it on every worker machine
#   bin/serve.sh all       release, then web and worker together on this machine (make serve)
#
# Settings come from the environment (see docs/deployment.md). DEBUG must be off; the settings
# refuse to start without SECRET_KEY, FIELD_ENCRYPTION_KEY and ALLOWED_HOSTS and name what is
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."

role=${1:-all}
py=${PYTHON:-.venv/bin/python}
[ -x "$py" ] || py=python3

export DJANGO_SETTINGS_MODULE=spconnect.settings
case "${DEBUG:-false}" in
  0|false|False|no|off|"") export DEBUG=false ;;
  *) echo "bin/serve.sh runs production settings: unset DEBUG (it is '${DEBUG}'). For local work use make run." >&2; exit 2 ;;
esac

bind=${BIND:-127.0.0.1:8000}
workers=${WEB_CONCURRENCY:-2}
# Threads, not processes, absorb the waits on Amazon (the callback's code exchange, token
# refreshes, the SP-API proxy): a request waiting on Amazon holds a thread and almost no CPU.
threads=${WEB_THREADS:-8}

release() {
  "$py" manage.py migrate --noinput
  "$py" manage.py collectstatic --noinput --verbosity 0
  "$py" manage.py setup_schedules
  "$py" manage.py check --deploy --fail-level WARNING
}

web() {
  # Logging (where, the access-log format, redaction of every line) is in the config module.
  exec "$py" -m gunicorn spconnect.wsgi:application \
    --config python:spconnect.gunicorn_conf \
    --bind "$bind" \
    --workers "$workers" --threads "$threads" --worker-class gthread \
    --timeout "${WEB_TIMEOUT:-30}" --graceful-timeout 20 --keep-alive 5 \
    --max-requests "${WEB_MAX_REQUESTS:-2000}" --max-requests-jitter 200 \
    --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}"
}

worker() {
  # django-q2's cluster, stopping cleanly on SIGTERM to the process or to its group (qcluster
  # hangs on the latter): sellers/management/commands/worker.py.
  exec "$py" manage.py worker
}

case "$role" in
  release) release ;;
  web) web ;;
  worker) worker ;;
  all)
    release
    (web) &
    web_pid=$!
    (worker) &
    worker_pid=$!
    stop() { kill -TERM "$web_pid" "$worker_pid" 2>/dev/null || true; wait "$web_pid" "$worker_pid" 2>/dev/null || true; }
    trap stop INT TERM
    echo "spconnect: web on http://$bind (pid $web_pid), workers (pid $worker_pid). Ctrl-C stops both." >&2
    # Whichever stops first, stop the other: a half-running deployment must not look healthy.
    set +e
    wait -n "$web_pid" "$worker_pid"
    status=$?
    stop
    exit "$status"
    ;;
  *) echo "usage: bin/serve.sh [release|web|worker|all]" >&2; exit 2 ;;
esac
