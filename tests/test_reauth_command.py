"""`manage.py reauth`: filters, links, emails, idempotency, dry run, CSV and errors."""

from __future__ import annotations

import csv
import os
import re
from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sellers.models import Event, Grant, Invitation, Seller
from sellers.services.invitations import reauthorization_link_get_or_create
from sellers.services.status import seller_status_sync

from .conftest import FINANCE, INVENTORY, ORDERS, make_grant, make_seller, make_tenant, read_output, shows_token

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    return read_output(lambda stdout: call_command("reauth", *args, stdout=stdout, stderr=open(os.devnull, "w")))


def connected(tenant, name, *, spid, scopes=(ORDERS, INVENTORY), days=0, email=None) -> Seller:
    seller = make_seller(tenant, name, spid=spid, email=email)
    make_grant(seller, scopes=scopes, authorized_days_ago=days)
    seller.refresh_from_db()
    return seller


def revoked(tenant, name, *, spid) -> Seller:
    seller = connected(tenant, name, spid=spid)
    Grant.objects.filter(seller=seller).update(status=Grant.Status.REVOKED, revoked_at=timezone.now())
    seller_status_sync(seller=seller, record=False)
    return seller


@pytest.fixture
def fleet(tenant):
    """One seller in each situation a campaign tells apart."""
    failing = connected(tenant, "Failing", spid="A1FAIL")
    Grant.objects.filter(seller=failing).update(failing_since=timezone.now())
    seller_status_sync(seller=failing, record=False)
    return {
        "active": connected(tenant, "Active", spid="A1ACTIVE"),
        "partial": connected(tenant, "Partial", spid="A1PART", scopes=(ORDERS,)),
        "revoked": revoked(tenant, "Revoked", spid="A1REV"),
        "expired": connected(tenant, "Expired", spid="A1EXP", days=400),
        "due": connected(tenant, "Due", spid="A1DUE", days=340),
        "failing": Seller.objects.get(pk=failing.pk),
        "pending": make_seller(tenant, "Pending"),
    }


ROW = re.compile(r"^(?P<name>.+?) \((?P<spid>[^)]*)\) (?P<status>[a-z]+)\b.*?: (?P<link>http\S+|\(new link\))")


def names(out: str) -> set[str]:
    """Seller names of the per-seller lines (`Name (spid) status[, missing …]: link [note]`)."""
    return {m["name"] for m in map(ROW.match, out.splitlines()) if m}


def csv_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_fleet_statuses_are_as_expected(fleet):
    assert {k: s.status for k, s in fleet.items()} == {
        "active": "active", "partial": "partial", "revoked": "revoked", "expired": "expired",
        "due": "active", "failing": "failing", "pending": "invited",
    }


def test_without_filters_targets_revoked_partial_expired_and_renewals_due(fleet):
    out = run("--tenant", "acme", "--dry-run")
    assert names(out) == {"Partial", "Revoked", "Expired", "Due"}
    assert "4 seller(s) of Acme Agency matched; would create 4 link(s)" in out


def test_status_filter_takes_a_comma_list(fleet):
    assert names(run("--tenant", "acme", "--status", "revoked,failing", "--dry-run")) == {"Revoked", "Failing"}
    assert names(run("--tenant", "acme", "--status", "invited", "--dry-run")) == {"Pending"}


def test_missing_scope_filter_accepts_catalog_and_short_names(fleet):
    assert names(run("--tenant", "acme", "--missing-scope", INVENTORY, "--dry-run")) == {"Partial"}
    # Every connected seller lacks finance; the one never connected is not a campaign target.
    lacking_finance = names(run("--tenant", "acme", "--missing-scope", "finance", "--dry-run"))
    assert lacking_finance == {"Active", "Partial", "Revoked", "Expired", "Due", "Failing"}


def test_renewal_due_within_includes_overdue_but_not_later_renewals(fleet, tenant):
    connected(tenant, "Later", spid="A1LATER", days=300)
    assert names(run("--tenant", "acme", "--renewal-due-within", "30", "--dry-run")) == {"Due", "Expired"}
    assert names(run("--tenant", "acme", "--renewal-due-within", "70", "--dry-run")) == {"Due", "Expired", "Later"}


def test_seller_filter_is_repeatable_and_combines_with_others(fleet):
    assert names(run("--tenant", "acme", "--seller", "A1ACTIVE", "--seller", "A1REV", "--dry-run")) == {"Active", "Revoked"}
    assert names(run("--tenant", "acme", "--seller", "A1ACTIVE", "--seller", "A1REV", "--status", "revoked", "--dry-run")) == {"Revoked"}


def test_other_tenants_sellers_are_never_selected(fleet, other_tenant):
    revoked(other_tenant, "Theirs", spid="A1THEIRS")
    assert "Theirs" not in names(run("--tenant", "acme", "--status", "revoked", "--dry-run"))
    with pytest.raises(CommandError, match="No seller of acme has selling_partner_id A1THEIRS"):
        run("--tenant", "acme", "--seller", "A1THEIRS")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tenant", "nope"], "Unknown tenant 'nope'"),
        (["--tenant", "acme", "--status", "revoked,bogus"], "Unknown status bogus; use one of invited, opened"),
        (["--tenant", "acme", "--missing-scope", "sellingpartnerapi::teleport"], "Unknown scope 'sellingpartnerapi::teleport'"),
        (["--tenant", "acme", "--seller", "A1NOBODY"], "No seller of acme has selling_partner_id A1NOBODY"),
        (["--tenant", "acme", "--renewal-due-within", "-1"], "between 0 and 365"),
        (["--tenant", "acme", "--resend"], "--resend only makes sense with --send-email"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(fleet, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert Invitation.objects.count() == 0 and not mail.outbox


def test_run_creates_one_link_per_seller_with_history_then_reuses_them(fleet):
    out = run("--tenant", "acme")
    assert "4 seller(s) of Acme Agency matched; created 4 link(s), reused 0." in out
    links = Invitation.objects.all()
    assert links.count() == 4
    assert {i.seller.name for i in links} == {"Partial", "Revoked", "Expired", "Due"}
    assert {i.purpose for i in links} == {Invitation.Purpose.REAUTHORIZATION}
    assert Event.objects.filter(kind=Event.Kind.REAUTH_LINK_CREATED).count() == 4
    for invitation in links:
        assert invitation.url in out

    again = run("--tenant", "acme")
    assert "created 0 link(s), reused 4." in again
    assert Invitation.objects.count() == 4
    assert Event.objects.filter(kind=Event.Kind.REAUTH_LINK_CREATED).count() == 4


def test_an_open_link_from_elsewhere_is_reused_and_an_expired_one_is_replaced(fleet):
    open_link, _ = reauthorization_link_get_or_create(seller=fleet["revoked"], actor="staff:ann")
    stale, _ = reauthorization_link_get_or_create(seller=fleet["partial"], actor="staff:ann")
    Invitation.objects.filter(pk=stale.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    run("--tenant", "acme", "--status", "revoked,partial")
    assert list(Invitation.objects.filter(seller=fleet["revoked"])) == [open_link]
    assert Invitation.objects.filter(seller=fleet["partial"]).count() == 2


def test_pending_seller_gets_an_onboarding_link(fleet):
    run("--tenant", "acme", "--status", "invited")
    assert Invitation.objects.get(seller=fleet["pending"]).purpose == Invitation.Purpose.ONBOARDING


def test_send_email_emails_each_seller_once_and_records_it(fleet):
    Seller.objects.filter(pk=fleet["due"].pk).update(email="")
    out = run("--tenant", "acme", "--send-email")
    assert "Emailed 3; not emailed: no email address 1." in out
    assert sorted(m.to[0] for m in mail.outbox) == ["expired@example.com", "partial@example.com", "revoked@example.com"]
    message = next(m for m in mail.outbox if m.to == ["partial@example.com"])
    link = Invitation.objects.get(seller=fleet["partial"])
    assert message.subject == "Re-authorize Acme Agency's access to your Amazon account"
    assert link.url in message.body and INVENTORY in message.body  # names what is missing
    assert link.last_emailed_at is not None
    assert Event.objects.filter(kind=Event.Kind.REAUTH_LINK_EMAILED).count() == 3
    assert set(Event.objects.filter(kind=Event.Kind.REAUTH_LINK_EMAILED).values_list("seller__name", flat=True)) == {
        "Partial", "Revoked", "Expired"}

    mail.outbox.clear()
    again = run("--tenant", "acme", "--send-email")
    assert not mail.outbox
    assert "Emailed 0; not emailed: already emailed 3, no email address 1." in again
    assert Event.objects.filter(kind=Event.Kind.REAUTH_LINK_EMAILED).count() == 3


def test_resend_emails_again_with_the_same_link(fleet):
    run("--tenant", "acme", "--status", "revoked", "--send-email")
    first = mail.outbox[0].body
    mail.outbox.clear()
    out = run("--tenant", "acme", "--status", "revoked", "--send-email", "--resend")
    assert "Emailed 1." in out
    assert len(mail.outbox) == 1 and mail.outbox[0].body == first
    assert Invitation.objects.filter(seller=fleet["revoked"]).count() == 1
    assert Event.objects.filter(kind=Event.Kind.REAUTH_LINK_EMAILED, seller=fleet["revoked"]).count() == 2


def test_dry_run_changes_nothing_and_sends_nothing(fleet, tmp_path):
    existing, _ = reauthorization_link_get_or_create(seller=fleet["revoked"])
    events_before = Event.objects.count()
    path = tmp_path / "plan.csv"
    out = run("--tenant", "acme", "--send-email", "--dry-run", "--output", str(path))
    assert Invitation.objects.count() == 1 and Event.objects.count() == events_before and not mail.outbox
    assert Invitation.objects.get().last_emailed_at is None
    assert "Dry run, nothing changed: 4 seller(s) of Acme Agency matched; would create 3 link(s), reused 1." in out
    assert "Would email 4." in out
    rows = {r["name"]: r for r in csv_rows(path)}
    assert rows["Revoked"]["link"] == existing.url
    assert rows["Partial"]["link"] == "(new link)"
    assert {r["emailed"] for r in rows.values()} == {"no"}


def test_csv_has_the_campaign_columns_and_no_token(fleet, tmp_path):
    path = tmp_path / "campaign.csv"
    out = run("--tenant", "acme", "--send-email", "--output", str(path))
    assert "Wrote 4 row(s)" in out and "http" not in out  # links go to the file, not the terminal
    with open(path, newline="") as f:
        assert next(csv.reader(f)) == ["name", "selling_partner_id", "status", "missing_scopes", "link", "emailed"]
    rows = {r["name"]: r for r in csv_rows(path)}
    assert rows["Partial"] == {
        "name": "Partial",
        "selling_partner_id": "A1PART",
        "status": "partial",
        "missing_scopes": INVENTORY,
        "link": Invitation.objects.get(seller=fleet["partial"]).url,
        "emailed": "yes",
    }
    assert rows["Revoked"]["status"] == "revoked" and rows["Revoked"]["emailed"] == "yes"
    text = path.read_text()
    assert not shows_token(text) and "secret-acme" not in text


def test_unwritable_output_is_a_clear_error(fleet, tmp_path):
    with pytest.raises(CommandError, match="Cannot write"):
        run("--tenant", "acme", "--output", str(tmp_path / "missing-dir" / "x.csv"))
    assert Invitation.objects.count() == 0


def test_query_count_does_not_grow_with_the_number_of_sellers(tenant):
    def count_for(n: int, slug: str) -> int:
        t = make_tenant(slug, required=(ORDERS, FINANCE), optional=())
        for i in range(n):
            connected(t, f"S{i}", spid=f"A{slug.upper()}{i}", scopes=(ORDERS,))
        with CaptureQueriesContext(connection) as ctx:
            run("--tenant", slug, "--status", "partial")
        assert Invitation.objects.filter(tenant=t).count() == n
        return len(ctx.captured_queries)

    assert count_for(3, "small") == count_for(40, "large")


def test_a_failed_email_is_not_marked_sent_and_the_next_run_retries_it(fleet, monkeypatch):
    import smtplib

    from django.core.mail.backends.locmem import EmailBackend

    real = EmailBackend.send_messages

    def flaky(self, messages):
        if messages[0].to == ["revoked@example.com"]:
            raise smtplib.SMTPRecipientsRefused({"revoked@example.com": (450, b"try later")})
        return real(self, messages)

    monkeypatch.setattr(EmailBackend, "send_messages", flaky)
    out = run("--tenant", "acme", "--status", "revoked,partial", "--send-email")
    assert "Emailed 1; not emailed: email failed 1." in out
    assert Invitation.objects.get(seller=fleet["revoked"]).last_emailed_at is None
    assert not Event.objects.filter(kind=Event.Kind.REAUTH_LINK_EMAILED, seller=fleet["revoked"]).exists()

    monkeypatch.setattr(EmailBackend, "send_messages", real)
    mail.outbox.clear()
    assert "Emailed 1; not emailed: already emailed 1." in run("--tenant", "acme", "--status", "revoked,partial", "--send-email")
    assert [m.to for m in mail.outbox] == [["revoked@example.com"]]


def test_a_link_created_by_a_concurrent_run_is_used_not_duplicated(fleet, monkeypatch):
    from sellers.services import campaigns

    meanwhile, _ = reauthorization_link_get_or_create(seller=fleet["revoked"], actor="staff:ann")
    real = campaigns._open_links
    calls = []

    def stale_first_read(ids, now):
        calls.append(ids)
        return {} if len(calls) == 1 else real(ids, now)  # the first read predates the other run

    monkeypatch.setattr(campaigns, "_open_links", stale_first_read)
    out = run("--tenant", "acme", "--status", "revoked,partial", "--send-email")
    assert len(calls) == 2
    assert "created 1 link(s), reused 1." in out
    assert list(Invitation.objects.filter(seller=fleet["revoked"])) == [meanwhile]
    assert meanwhile.url in next(m.body for m in mail.outbox if m.to == ["revoked@example.com"])
