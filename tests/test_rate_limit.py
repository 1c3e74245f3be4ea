"""Public pages are rate limited per client address through the cache; X-Forwarded-For counts
only when the deployment says how many proxies write it."""

from __future__ import annotations

import logging
from urllib.parse import urlparse

import pytest
from django.core.cache import cache
from django.test import Client, RequestFactory
from redis.exceptions import ConnectionError as RedisConnectionError

from sellers.models import Event
from sellers.services.invitations import invitation_create
from spconnect.middleware import client_address, rate_limit_hit

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("rate_window_held")]


@pytest.fixture
def limit(settings):
    settings.SPCONNECT_RATE_LIMIT_REQUESTS = 3
    settings.SPCONNECT_RATE_LIMIT_WINDOW_SECONDS = 60
    settings.SPCONNECT_TRUSTED_PROXY_COUNT = 0
    return settings


@pytest.fixture
def invite_path(tenant) -> str:
    return urlparse(invitation_create(tenant=tenant, name="Limited Shop").url).path


def hit(client: Client, path: str, times: int, method: str = "get", **extra) -> list[int]:
    return [getattr(client, method)(path, **extra).status_code for _ in range(times)]


def test_hosted_page_answers_429_with_retry_after_once_the_limit_is_spent(limit, invite_path):
    client = Client()
    assert hit(client, invite_path, 3) == [200, 200, 200]
    refused = client.get(invite_path)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["Cache-Control"] == "no-store"
    assert b"Too many attempts" in refused.content
    assert "Content-Security-Policy" in refused  # the refusal page is a hosted page too


PUBLIC = {
    "hosted-page": ("{invite}", "get"),
    "start": ("{invite}start/", "post"),
    "callback": ("/authflow/callback/?state=abc&spapi_oauth_code=xyz", "get"),
    "result": ("/authflow/result/", "get"),
    "login-uri": ("/authflow/login/?amazon_callback_uri=https://sellercentral.amazon.com/apps/authorize/confirm/x"
                  "&amazon_state=s", "get"),
}


@pytest.mark.parametrize("endpoint", PUBLIC)
def test_every_public_endpoint_is_limited(limit, invite_path, endpoint):
    template, method = PUBLIC[endpoint]
    path = template.format(invite=invite_path)
    client = Client()
    assert 429 not in hit(client, path, 3, method)
    assert getattr(client, method)(path).status_code == 429


def test_a_refused_request_never_reaches_the_view(limit, invite_path):
    client = Client()
    hit(client, invite_path, 3)
    started_before = Event.objects.filter(kind=Event.Kind.CONSENT_STARTED).count()
    assert client.post(invite_path + "start/").status_code == 429
    assert Event.objects.filter(kind=Event.Kind.CONSENT_STARTED).count() == started_before
    assert "sessionid" not in client.cookies  # no session row for a refused request


def test_limit_is_per_client_address(limit, invite_path):
    first, second = Client(REMOTE_ADDR="198.51.100.1"), Client(REMOTE_ADDR="198.51.100.2")
    hit(first, invite_path, 3)
    assert first.get(invite_path).status_code == 429
    assert second.get(invite_path).status_code == 200


def test_ipv6_clients_share_a_slash_64(limit, invite_path):
    hit(Client(REMOTE_ADDR="2001:db8:1:2::10"), invite_path, 3)
    assert Client(REMOTE_ADDR="2001:db8:1:2:ffff::1").get(invite_path).status_code == 429
    assert Client(REMOTE_ADDR="2001:db8:1:3::10").get(invite_path).status_code == 200


def test_x_forwarded_for_is_ignored_unless_configured(limit, invite_path):
    client = Client(REMOTE_ADDR="10.0.0.5")
    for n in range(3):
        assert client.get(invite_path, HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code == 200
    # A fresh, made-up address in the header does not buy a fresh bucket.
    assert client.get(invite_path, HTTP_X_FORWARDED_FOR="203.0.113.99").status_code == 429


def test_x_forwarded_for_names_the_client_behind_one_trusted_proxy(limit, invite_path):
    limit.SPCONNECT_TRUSTED_PROXY_COUNT = 1
    proxy = Client(REMOTE_ADDR="10.0.0.5")
    for _ in range(3):
        assert proxy.get(invite_path, HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 200
    # Entries the client wrote itself (left of what our proxy appended) change nothing.
    assert proxy.get(invite_path, HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.7").status_code == 429
    # Another client behind the same proxy has its own bucket.
    assert proxy.get(invite_path, HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 200


@pytest.mark.parametrize(
    "proxies, header, expected",
    [
        (0, "203.0.113.7", "10.0.0.5"),
        (1, "203.0.113.7", "203.0.113.7"),
        (1, "6.6.6.6, 203.0.113.7", "203.0.113.7"),
        (2, "6.6.6.6, 203.0.113.7, 10.0.0.9", "203.0.113.7"),
        (2, "203.0.113.7", "10.0.0.5"),  # fewer hops than proxies: not from our proxies
        (1, "not-an-address", "10.0.0.5"),
        (1, "", "10.0.0.5"),
        (1, "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_address(settings, proxies, header, expected):
    settings.SPCONNECT_TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR=header)
    assert client_address(request) == expected


def test_window_ends_and_the_address_may_come_back(db):
    start = 1_000_020.0  # 1_000_020 // 60 = 16667, window ends at 1_000_080
    decisions = [rate_limit_hit(address="192.0.2.1", limit=2, window=60, now=start) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert decisions[-1].retry_after == 60
    assert rate_limit_hit(address="192.0.2.1", limit=2, window=60, now=start + 45).retry_after == 15
    assert rate_limit_hit(address="192.0.2.1", limit=2, window=60, now=start + 60).allowed


def test_counters_live_in_the_cache(limit, invite_path):
    client = Client()
    hit(client, invite_path, 3)
    assert client.get(invite_path).status_code == 429
    cache.clear()  # what another process sees too: the cache is the only state
    assert client.get(invite_path).status_code == 200


def test_admin_healthz_and_static_are_not_limited(limit, invite_path):
    client = Client()
    hit(client, invite_path, 4)
    assert client.get("/healthz").status_code == 200
    assert client.get("/admin/login/").status_code == 200


def test_staff_sign_in_attempts_are_limited_apart_from_the_public_pages(limit, invite_path, make_user):
    limit.SPCONNECT_LOGIN_RATE_LIMIT_REQUESTS = 2
    limit.SPCONNECT_LOGIN_RATE_LIMIT_WINDOW_SECONDS = 300
    make_user("olga")
    client = Client()
    wrong = {"username": "olga", "password": "guess", "next": "/admin/"}
    assert hit(client, "/admin/login/", 2, "post", data=wrong) == [200, 200]  # the form again, with an error
    refused = client.post("/admin/login/", {"username": "olga", "password": "pw-olga"})
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 300
    assert "Too many sign-in attempts" in refused.content.decode()
    assert "_auth_user_id" not in client.session  # even the right password waits
    assert client.get("/admin/login/").status_code == 200  # reading the page is not an attempt
    assert client.get(invite_path).status_code == 200  # sellers' pages count separately
    assert Client(REMOTE_ADDR="198.51.100.7").post("/admin/login/", {"username": "olga", "password": "pw-olga"}).status_code == 302


def test_zero_turns_the_limit_off(limit, invite_path):
    limit.SPCONNECT_RATE_LIMIT_REQUESTS = 0
    assert 429 not in hit(Client(), invite_path, 6)


def test_cache_outage_lets_sellers_through_and_is_logged(limit, invite_path, monkeypatch, caplog):
    def down(*args, **kwargs):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(cache, "add", down)
    with caplog.at_level(logging.WARNING, logger="spconnect.middleware"):
        assert hit(Client(), invite_path, 5) == [200] * 5
    assert "cache is unreachable" in caplog.text
