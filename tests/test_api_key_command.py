"""`manage.py api_key create|list|revoke` and the key services beneath it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from api.keys import api_key_find
from api.models import ApiKey
from sellers.hashing import token_hash
from sellers.models import Event

from .conftest import read_output

pytestmark = pytest.mark.django_db

KEY = re.compile(r"^spc_[a-z0-9]{8}_[A-Za-z0-9_-]{32,}$")


def api_key(*args) -> str:
    return read_output(lambda stdout: call_command("api_key", *args, stdout=stdout))


def test_create_prints_the_key_alone_on_the_last_line_and_stores_only_its_hash(tenant):
    out = api_key("create", "--tenant", "acme", "--name", "repricer", "--permissions", "tokens:read,connections:read",
                  "--paths", "/orders/v0/, /fba/inventory/", "--expires-days", "30")
    key = out.strip().splitlines()[-1]
    assert KEY.match(key)
    stored = ApiKey.objects.get()
    assert stored.key_hash == token_hash(key) and stored.prefix == key[4:12]
    assert key not in str(ApiKey.objects.values().get())  # the key itself is nowhere in the row
    assert stored.permissions == ["connections:read", "tokens:read"]  # catalog order
    assert stored.paths == ["/orders/v0/", "/fba/inventory/"]
    assert timedelta(days=29, hours=23) < stored.expires_at - timezone.now() <= timedelta(days=30)
    assert stored.created_by == "command:api_key"
    event = Event.objects.get(kind=Event.Kind.API_KEY_CREATED)
    assert event.tenant == tenant and event.seller is None and event.actor == "command:api_key"
    assert event.data["prefix"] == stored.prefix and key not in event.detail and key not in str(event.data)
    assert api_key_find(key) == stored


def test_list_shows_prefixes_and_state_never_a_key(tenant):
    key = api_key("create", "--tenant", "acme", "--name", "sync", "--permissions", "connections:read").strip().splitlines()[-1]
    api_key("create", "--tenant", "acme", "--name", "old", "--permissions", "proxy,rdt:create,grantless")
    api_key("revoke", "--tenant", "acme", "--name", "old")
    out = api_key("list", "--tenant", "acme")
    assert key not in out and key[:13] + "…" in out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["name", "prefix", "state"]
    assert any(line.startswith("old ") and " revoked " in line and "proxy,rdt:create,grantless" in line for line in lines)
    assert any(line.startswith("sync ") and " active " in line for line in lines)


def test_revoke_stops_the_key_and_records_who(tenant):
    key = api_key("create", "--tenant", "acme", "--name", "sync", "--permissions", "connections:read").strip().splitlines()[-1]
    assert "Revoked sync" in api_key("revoke", "--tenant", "acme", "--name", "sync")
    assert api_key_find(key) is None
    stored = ApiKey.objects.get()
    assert stored.revoked_at is not None and stored.revoked_by == "command:api_key"
    assert Event.objects.get(kind=Event.Kind.API_KEY_REVOKED).actor == "command:api_key"
    with pytest.raises(CommandError, match="already revoked"):
        api_key("revoke", "--tenant", "acme", "--name", "sync")
    assert Event.objects.filter(kind=Event.Kind.API_KEY_REVOKED).count() == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["create", "--tenant", "nope", "--name", "x", "--permissions", "proxy"], "Unknown tenant 'nope'"),
        (["create", "--tenant", "acme", "--name", "x", "--permissions", "tokens:write"], "Unknown permission tokens:write"),
        (["create", "--tenant", "acme", "--name", "x", "--permissions", " , "], "at least one permission"),
        (["create", "--tenant", "acme", "--name", " ", "--permissions", "proxy"], "A key name is 1 to 100"),
        (["create", "--tenant", "acme", "--name", "x", "--permissions", "proxy", "--paths", "orders"], "not an SP-API path"),
        (["create", "--tenant", "acme", "--name", "x", "--permissions", "proxy", "--expires-days", "0"], "1 to 3650 days"),
        (["revoke", "--tenant", "acme", "--name", "ghost"], "no API key named 'ghost'"),
    ],
)
def test_bad_input_is_a_clear_error_and_creates_nothing(tenant, args, message):
    with pytest.raises(CommandError, match=message):
        api_key(*args)
    assert not ApiKey.objects.exists() and not Event.objects.exists()


def test_names_are_unique_per_tenant_only(tenant, other_tenant):
    api_key("create", "--tenant", "acme", "--name", "sync", "--permissions", "proxy")
    with pytest.raises(CommandError, match="already has a key named 'sync'"):
        api_key("create", "--tenant", "acme", "--name", "sync", "--permissions", "proxy")
    api_key("create", "--tenant", "globex", "--name", "sync", "--permissions", "proxy")
    assert ApiKey.objects.count() == 2


def test_find_refuses_a_wrong_secret_and_an_expired_key(tenant):
    key = api_key("create", "--tenant", "acme", "--name", "sync", "--permissions", "proxy").strip().splitlines()[-1]
    assert api_key_find(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert api_key_find(key.replace("spc_", "spk_")) is None
    assert api_key_find("") is None and api_key_find("spc_" + "a" * 500) is None
    ApiKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api_key_find(key) is None


def test_help_names_every_permission(capsys):
    with pytest.raises(SystemExit):
        call_command("api_key", "create", "--help")
    out = capsys.readouterr().out
    for permission in ("connections:read", "tokens:read", "proxy", "rdt:create", "invitations:write", "grantless"):
        assert permission in out
    assert "last line" in out
