#!/usr/bin/env bash
# The API against its own description: Schemathesis reads /api/v1/openapi.json from a live
# server and sends it generated requests (the stateless phases: examples, coverage, fuzzing; at
# most API_CHECK_EXAMPLES per operation, default 40), authenticated with a real key created here.
# It fails on any 5xx (and on a traceback in the server's log), on a status code, content type,
# header or body the description does not allow, on a request answered without a valid key, on
# data the description rules out being accepted, and on a wrong method answered without 405.
# Not checked: that every request the description allows is accepted (a made-up `cursor`, or an
# address Django's email validator refuses, fits the description's types and is rightly a 400).
#
# A throwaway SQLite database and a free port; nothing is left behind. `make api-check`, and
# .ci/run. API_CHECK_SEED (default 1) picks the generated data. One worker: Python 3.11's parser,
# which Schemathesis's generators call, is not safe across threads.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PY:-.venv/bin/python}
st=$(dirname "$py")/st
examples=${API_CHECK_EXAMPLES:-40}
seed=${API_CHECK_SEED:-1}

work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

port=$($py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export SPCONNECT_ENV_FILE=/nonexistent DJANGO_SETTINGS_MODULE=spconnect.settings
export DEBUG=true SPAPI_SANDBOX=true LOG_LEVEL=WARNING
export SECRET_KEY=$($py -c 'import secrets; print(secrets.token_urlsafe(50))')
export FIELD_ENCRYPTION_KEY=$($py -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')
export SITE_URL="http://127.0.0.1:$port" DATABASE_URL="sqlite:///$work/db.sqlite3"
# Login with Amazon and SP-API are this server's sandbox, whatever the caller's environment says:
# generated proxy, token and grantless requests must never reach Amazon.
export SPAPI_LWA_TOKEN_URL="http://127.0.0.1:$port/sandbox/auth/o2/token"
for region in NA EU FE; do
  export "SPAPI_API_HOST_$region=http://127.0.0.1:$port/sandbox/spapi/${region,,}"
  export "SPAPI_CONSENT_HOST_$region=http://127.0.0.1:$port/sandbox/${region,,}"
done
# Thousands of requests with one key: the per-key limit would answer 429 (allowed, but it would
# hide everything behind it).
export SPCONNECT_API_RATE_LIMIT_REQUESTS=0

echo "api-check: database and data in $work, server on port $port"
$py manage.py migrate --noinput -v 0
$py manage.py seed_demo >/dev/null
# Connections in every state, so generated requests meet real ones: pending, active (its refresh
# token known to the sandbox's LWA), revoked, expired; and one of another tenant.
ids=$($py - <<'PY'
import json
import secrets
from datetime import timedelta

import django

django.setup()
from django.utils import timezone

from sandbox.models import SandboxAuthorization
from sellers.hashing import token_hash
from sellers.models import Grant, Seller, Tenant
from sellers.services.grants import grant_mark_revoked
from sellers.services.invitations import invitation_create
from sellers.services.status import seller_status_sync

demo = Tenant.objects.get(slug="demo")
other = Tenant.objects.create(slug="other", name="Other Agency", application_id="amzn1.sellerapps.app.other",
                              client_id="amzn1.application-oa2-client.other", client_secret=secrets.token_urlsafe(32))
now = timezone.now()
scopes = ["sellingpartnerapi::orders", "sellingpartnerapi::inventory"]


def connected(tenant, name, spid, days_ago=0):
    seller = Seller.objects.create(tenant=tenant, name=name, selling_partner_id=spid)
    grant = Grant.objects.create(
        seller=seller, refresh_token=f"Atzr|check-{secrets.token_urlsafe(24)}", access_token=f"Atza|check-{secrets.token_urlsafe(24)}",
        access_token_expires_at=now + timedelta(minutes=10), granted_scopes=scopes, scopes_confirmed=True,
        authorized_at=now - timedelta(days=days_ago), last_refreshed_at=now,
    )
    SandboxAuthorization.objects.create(
        client_id=tenant.client_id, selling_partner_id=spid, region="na", scopes=scopes, redirect_uri="",
        code_hash=secrets.token_hex(32), code_expires_at=now, code_used_at=now, refresh_token_hash=token_hash(grant.refresh_token),
    )
    seller_status_sync(seller=seller, grant=grant, record=False)
    return seller


sellers = [
    invitation_create(tenant=demo, name="Pending Shop").seller,
    connected(demo, "Active Shop", "A1CHECKACTIVE"),
    connected(demo, "Revoked Shop", "A1CHECKREVOKED"),
    connected(demo, "Expired Shop", "A1CHECKEXPIRED", days_ago=400),
    connected(other, "Another Agency's Shop", "A1CHECKOTHER"),
]
grant_mark_revoked(seller=sellers[2], reason="api-check", actor="system")
print(json.dumps([str(s.public_id) for s in sellers]))
PY
)
key=$($py manage.py api_key create --tenant demo --name api-check \
  --permissions connections:read,tokens:read,invitations:write,proxy,rdt:create,grantless | tail -n1)

# Path ids are drawn from the real connections half of the time, made up the other half; the
# proxy's SP-API paths likewise from operations the sandbox plays (and one it refuses a plain
# token: buyers' data), so that generated requests get past the checks and reach the sandbox.
cat >"$work/schemathesis.toml" <<TOML
[dictionaries.connections]
values = $ids

[dictionaries.spapi_paths]
values = ["orders/v0/orders", "fba/inventory/v1/summaries", "sellers/v1/marketplaceParticipations",
          "orders/v0/orders/902-1234567-7654321/address", "reports/2021-06-30/reports"]

[parameters]
"path.id" = { dictionary = "connections", probability = 0.5 }
"path.path" = { dictionary = "spapi_paths", probability = 0.5 }

[generation]
max-examples = $examples
TOML

$py manage.py runserver --noreload "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 60); do
  $py -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
    "http://127.0.0.1:$port/api/v1/openapi.json" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; echo "api-check: the server did not start" >&2; exit 1; }
  sleep 0.5
done

set +e
# From the work folder: Schemathesis keeps its example database in ./.schemathesis there.
st=$(realpath "$st")
(cd "$work" && "$st" --no-color --config-file "$work/schemathesis.toml" run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --header "Authorization: Bearer $key" \
  --phases examples,coverage,fuzzing \
  --checks all --exclude-checks positive_data_acceptance \
  --seed "$seed" --workers 1 --request-timeout 30)
status=$?
set -e
if grep -q "Traceback" "$work/server.log"; then
  echo "api-check: the server logged a traceback:" >&2
  grep -B2 -A30 "Traceback" "$work/server.log" | head -80 >&2
  status=1
fi
exit $status
