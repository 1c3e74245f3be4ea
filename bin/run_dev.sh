#!/usr/bin/env bash
# `make run`: migrate, seed the demo tenant, print a demo seller's invitation link, then serve the
# app and a background-task worker together. Ctrl-C, or SIGTERM to this script, stops both.
#
#   bin/run_dev.sh [HOST] [PORT]     (make run HOST=… PORT=…; defaults 127.0.0.1 8000)
#
# Every link the app prints or sends (admin, invitations, the consent redirect) is built from
# SITE_URL: here it follows HOST and PORT, unless SITE_URL is set in the environment (a tunnel's
# https address, say), and is written to .env for the other commands.
set -euo pipefail
cd "$(dirname "$0")/.."
host=${1:-127.0.0.1}
port=${2:-8000}
py=${PYTHON:-.venv/bin/python}

case "$host" in
  0.0.0.0 | "::" | "[::]") link_host=127.0.0.1 ;;  # listening everywhere: links name this machine
  *:*) link_host="[${host#[}"; link_host="${link_host%]}]" ;;  # an IPv6 address
  *) link_host=$host ;;
esac
export SITE_URL="${SITE_URL:-http://$link_host:$port}"
# Recorded in the local .env (if there is one), so that commands run beside the server
# (`manage.py invite`, `reauth`) build the same links.
SPCONNECT_ENV_FILE="${SPCONNECT_ENV_FILE:-.env}" $py - <<'PY'
import os, re
path, line = os.environ["SPCONNECT_ENV_FILE"], f"SITE_URL={os.environ['SITE_URL']}"
if os.path.isfile(path):
    with open(path) as fh:
        text = fh.read()
    new, found = re.subn(r"(?m)^SITE_URL=.*$", lambda _: line, text)
    if not found:
        new = text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"
    if new != text:
        with open(path, "w") as fh:  # the file keeps its 0600 mode
            fh.write(new)
PY

$py manage.py migrate --noinput -v0
$py manage.py seed_demo  # idempotent; the demo tenant's redirect URI follows SITE_URL
# The sandbox starts in the scope model (`seed`); `manage.py sandbox mode amazon` (or the
# sandbox's page) switches it to Amazon as it really behaves.
$py manage.py sandbox mode seed || true  # fails only when SPAPI_SANDBOX is off: nothing to set
# The same demo seller every run (a new link only when its last one expired or was used).
invited=$($py manage.py invite --tenant demo --name "Demo Seller" --email seller@example.com --reuse)
echo "${invited%$'\n'*}"
echo "Invitation link for a demo seller: ${invited##*$'\n'}"
mail=$($py manage.py shell -v0 -c "from django.conf import settings as s
print(f'written to files in {s.EMAIL_FILE_PATH}/, not sent' if s.EMAIL_BACKEND.endswith('filebased.EmailBackend') else f'sent by {s.EMAIL_BACKEND}')")
echo "Emails (invitation links, notifications): $mail."

# `worker`, not `qcluster`: a Ctrl-C or SIGTERM reaching every process of the group stops it
# cleanly instead of hanging (sellers/management/commands/worker.py).
$py manage.py worker &
worker=$!
# In the background too: bash runs a trap only once its foreground command has ended, so with
# runserver in the foreground a SIGTERM to this script alone (`kill PID`, or make passing on its
# own SIGTERM) was never acted on and the worker kept running.
$py manage.py runserver "$host:$port" &
server=$!
stop() {
  trap - INT TERM EXIT
  kill -TERM "$server" "$worker" 2>/dev/null || true
  wait "$server" "$worker" 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT
echo "Serving $SITE_URL/ (admin: $SITE_URL/admin/, local Amazon sandbox: $SITE_URL/sandbox/). Ctrl-C to stop."
# Whichever stops first, stop the other.
set +e
wait -n "$server" "$worker"
status=$?
stop
exit "$status"
