"""Staff notifications: who gets the email, and the signed webhook (never carrying a token).
What each webhook says and how it is signed: tests/test_webhooks.py."""

from __future__ import annotations

import http.server
import socket
import threading
from datetime import UTC, timedelta

import pytest
import requests
from django.core import mail
from django.utils import timezone
from django_q.models import Schedule
from standardwebhooks import Webhook

from sellers.models import Event, TenantMembership
from sellers.services.events import event_record
from sellers.services.notifications import notify_staff
from sellers.services.webhooks import WebhookDeliveryFailed, webhook_deliver

from .conftest import make_seller, shows_token
from .test_tokens import connected, staff

pytestmark = pytest.mark.django_db

HOOK = "http://127.0.0.1:9/hooks/spconnect"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # Standard Webhooks' own example secret


@pytest.fixture
def local_hooks(settings):
    """The tests below post to a receiver on this machine, as in development."""
    settings.SPCONNECT_WEBHOOK_ALLOW_PRIVATE = True


def test_email_goes_to_owners_and_managers_of_the_tenant_only(tenant, other_tenant, make_user, django_capture_on_commit_callbacks):
    staff(make_user, tenant, "owner")
    staff(make_user, tenant, "manager", role=TenantMembership.Role.MANAGER)
    staff(make_user, tenant, "viewer", role=TenantMembership.Role.VIEWER)
    staff(make_user, other_tenant, "stranger")
    make_user("noemail", tenant=tenant)  # an owner without an address is skipped
    seller = make_seller(tenant, "Shop", spid="A1SHOP")
    event = event_record(seller=seller, kind=Event.Kind.REVOKED, detail="LWA said invalid_grant.")
    with django_capture_on_commit_callbacks(execute=True):
        notify_staff(tenant=tenant, subject="Shop is revoked", body="Shop revoked access.", event=event)
    assert sorted(m.to[0] for m in mail.outbox) == ["manager@agency.example", "owner@agency.example"]
    message = mail.outbox[0]
    assert message.subject == f"[spconnect] {tenant.name}: Shop is revoked"
    assert "Shop revoked access." in message.body and "A1SHOP" in message.body and "Revoked at" in message.body


def test_nothing_leaves_before_the_transaction_commits(tenant, make_user, django_capture_on_commit_callbacks):
    staff(make_user, tenant, "owner")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        notify_staff(tenant=tenant, subject="s", body="b")
    assert mail.outbox == [] and len(callbacks) == 1


def test_webhook_goes_through_django_q_signed_and_never_carries_a_token(
    local_hooks, tenant, monkeypatch, django_capture_on_commit_callbacks
):
    tenant.webhook_url, tenant.webhook_secret = HOOK, SECRET
    tenant.save()
    seller, grant = connected(tenant, spid="A1HOOKED")
    posted = []

    def fake_post(*, url, body, headers, addresses=None):
        posted.append({"url": url, "body": body, "headers": dict(headers), "addresses": addresses})
        return 200

    monkeypatch.setattr("sellers.services.webhooks.webhook_post", fake_post)
    # Services never put tokens in history or messages; if one ever did, the webhook would not carry it.
    event = event_record(seller=seller, kind=Event.Kind.REVOKED, detail=f"leaked {grant.refresh_token}", data={"from": "active"})
    with django_capture_on_commit_callbacks(execute=True):
        notify_staff(tenant=tenant, subject="Shop is revoked", body=f"oops {grant.access_token}", event=event)
    [sent] = posted
    assert sent["url"] == HOOK and sent["addresses"] == ["127.0.0.1"]
    payload = Webhook(SECRET).verify(sent["body"], sent["headers"])
    assert payload["type"] == "connection.revoked" and payload["data"]["selling_partner_id"] == "A1HOOKED"
    assert payload["data"]["id"] == str(seller.public_id)
    text = sent["body"].decode()
    assert not shows_token(text) and grant.refresh_token not in text and "oops" not in text and "leaked" not in text


def test_a_notice_without_an_event_and_an_unannounced_kind_send_no_webhook(
    local_hooks, tenant, amazon_calls, django_capture_on_commit_callbacks
):
    tenant.webhook_url, tenant.webhook_secret = HOOK, SECRET
    tenant.save()
    event = event_record(tenant=tenant, kind=Event.Kind.SECRET_ROTATED, detail="Rotated.")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        notify_staff(tenant=tenant, subject="digest", body="b")
        notify_staff(tenant=tenant, subject="rotated", body="b", event=event)
    assert callbacks == [] and amazon_calls.calls == []


def test_failed_webhook_is_retried_through_django_q_with_the_same_id_then_given_up(local_hooks, tenant, amazon_calls):
    tenant.webhook_url, tenant.webhook_secret = HOOK, SECRET
    tenant.save()
    amazon_calls.script(url_contains="/hooks/", status=500)
    with pytest.raises(WebhookDeliveryFailed, match="attempt 2"):
        webhook_deliver(tenant_id=tenant.pk, body='{"type":"notice"}', message_id="msg_first")
    [first] = amazon_calls.calls
    assert first.headers["webhook-id"] == "msg_first"
    retry = Schedule.objects.get(func="sellers.tasks.webhook_deliver")
    assert retry.schedule_type == Schedule.ONCE and retry.args.endswith(", 2, 'msg_first')")  # (tenant, body, 2, id)
    assert retry.next_run > timezone.now() + timedelta(seconds=50)
    amazon_calls.script(url_contains="/hooks/", exc=requests.ConnectionError("refused"))
    with pytest.raises(WebhookDeliveryFailed, match="gave up"):
        webhook_deliver(tenant_id=tenant.pk, body='{"type":"notice"}', attempt=5, message_id="msg_first")
    assert Schedule.objects.filter(func="sellers.tasks.webhook_deliver").count() == 1


def test_webhook_without_a_secret_is_not_sent(local_hooks, tenant, amazon_calls, django_capture_on_commit_callbacks):
    tenant.webhook_url = HOOK
    tenant.save()
    seller, _ = connected(tenant)
    event = event_record(seller=seller, kind=Event.Kind.REVOKED, detail="LWA said invalid_grant.")
    with django_capture_on_commit_callbacks(execute=True):
        notify_staff(tenant=tenant, subject="s", body="b", event=event)
    assert amazon_calls.calls == []


# --- Where webhooks may go ------------------------------------------------------------------


def _public_dns(monkeypatch, address: str):
    def getaddrinfo(host, port, *args, **kwargs):
        return [(2, 1, 6, "", (address, port))]

    monkeypatch.setattr("sellers.validators.socket.getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    "url",
    [
        HOOK,  # http, loopback
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://[::1]/hook",
        "https://[::ffff:10.0.0.5]/hook",
        "https://169.254.169.254/latest/meta-data/",  # cloud metadata
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://redis.internal/hook",
        "https://user:pw@hooks.example/hook",
        "https://straße.example/hook",  # resolved as strasse.example, called as xn--strae-oqa.example
        "https://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 to 169.254.169.254
        "https://[2002:a9fe:a9fe::]/hook",  # 6to4
        "https://[::7f00:1]/hook",  # IPv4-compatible 127.0.0.1
    ],
)
def test_internal_webhook_urls_are_refused_at_delivery_without_a_request(tenant, amazon_calls, url):
    tenant.webhook_url, tenant.webhook_secret = url, SECRET
    tenant.save()
    with pytest.raises(WebhookDeliveryFailed, match="refused"):
        webhook_deliver(tenant_id=tenant.pk, body='{"type":"notice"}')
    assert amazon_calls.calls == []
    assert not Schedule.objects.filter(func="sellers.tasks.webhook_deliver").exists()


def test_a_public_name_that_now_resolves_inside_is_refused(tenant, amazon_calls, monkeypatch):
    _public_dns(monkeypatch, "172.16.5.4")
    tenant.webhook_url, tenant.webhook_secret = "https://hooks.example/x", SECRET
    tenant.save()
    with pytest.raises(WebhookDeliveryFailed, match="resolves to a private"):
        webhook_deliver(tenant_id=tenant.pk, body='{"type":"notice"}')
    assert amazon_calls.calls == []


def test_a_public_https_receiver_gets_the_post(tenant, amazon_calls, monkeypatch):
    _public_dns(monkeypatch, "93.184.215.14")
    tenant.webhook_url, tenant.webhook_secret = "https://hooks.example/x", SECRET
    tenant.save()
    amazon_calls.script(url_contains="hooks.example", status=204)
    assert webhook_deliver(tenant_id=tenant.pk, body='{"type":"notice"}') == "delivered (attempt 1)"
    assert [c.url for c in amazon_calls.calls] == ["https://hooks.example/x"]


def _http_receiver():
    received = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.headers["Host"], self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1], received


def _resolver(monkeypatch, answers: dict[str, list[list[str]]]) -> list[str]:
    """Replace the machine's resolver: each name answers from its list, one answer per lookup
    (a rebinding server answers differently the second time); other `.example` names fail."""
    lookups = []
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        lookups.append(host)
        if host in answers:
            if not answers[host]:
                raise socket.gaierror(f"{host} now points elsewhere")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host].pop(0)]
        if host.endswith("example"):
            raise socket.gaierror("no such host")
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


def _deliver(tenant, monkeypatch, addresses: list[str]) -> tuple[list[str], list, int]:
    """Deliver one webhook to a local receiver named hooks.example, which resolves (once) to
    `addresses`. Returns (lookups, received requests, port)."""
    server, port, received = _http_receiver()
    lookups = _resolver(monkeypatch, {"hooks.example": [addresses]})
    tenant.webhook_url, tenant.webhook_secret = f"http://hooks.example:{port}/in", SECRET
    tenant.save()
    try:
        assert webhook_deliver(tenant_id=tenant.pk, body='{"type":"notice"}') == "delivered (attempt 1)"
    finally:
        server.shutdown()
        server.server_close()
    return lookups, received, port


def test_delivery_connects_to_the_address_it_checked_not_to_a_fresh_lookup(local_hooks, tenant, monkeypatch):
    """DNS rebinding: the name is resolved once, checked, and that address is the one called."""
    lookups, received, port = _deliver(tenant, monkeypatch, ["127.0.0.1"])
    assert lookups.count("hooks.example") == 1  # the check's lookup; the connection used its answer
    assert received == [(f"hooks.example:{port}", b'{"type":"notice"}')]


def test_delivery_tries_the_next_checked_address_when_one_refuses(local_hooks, tenant, monkeypatch):
    _, received, _ = _deliver(tenant, monkeypatch, ["127.0.0.2", "127.0.0.1"])  # nothing listens on .2
    assert len(received) == 1


def test_through_a_configured_proxy_the_webhook_is_not_pinned(monkeypatch):
    """An egress proxy resolves the name itself: the request goes through the shared session."""
    from sellers import http as amazon

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    used = []
    monkeypatch.setattr(amazon._session, "request", lambda method, url, **kw: used.append(url) or "via proxy")
    assert amazon.send("POST", "https://hooks.example/in", data=b"{}", pin_addresses=["203.0.113.9"]) == "via proxy"
    assert used == ["https://hooks.example/in"]


def _tls_receiver(tmp_path, name: str):
    """An HTTPS server on 127.0.0.1 with a certificate for `name`, and the CA file to trust it."""
    import ssl
    from datetime import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    seen = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(self.headers["Host"])
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, str(cert_file), seen


def test_a_pinned_https_request_still_verifies_the_host_name(tmp_path):
    from sellers import http as amazon

    server, ca_file, seen = _tls_receiver(tmp_path, "hooks.example")
    port = server.server_address[1]
    try:
        # The name is never resolved: the connection goes to the pinned address, and the
        # certificate is checked against the name in the URL.
        response = amazon.send("POST", f"https://hooks.example:{port}/in", data=b"{}", pin_addresses=["127.0.0.1"],
                               verify=ca_file)
        assert response.status_code == 204 and seen == [f"hooks.example:{port}"]
        with pytest.raises(requests.exceptions.SSLError):  # a certificate for another name is refused
            amazon.send("POST", f"https://other.example:{port}/in", data=b"{}", pin_addresses=["127.0.0.1"], verify=ca_file)
    finally:
        server.shutdown()
        server.server_close()
