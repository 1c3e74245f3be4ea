"""Seller identity fails closed: new tokens replace a grant, or take an id another seller holds,
only when SP-API shows the same account behind both; anything else waits for an identity review.

End to end over real HTTP: browsers (requests sessions) against the live server, whose consent
page, LWA and SP-API are the local sandbox. The attacker approves with their own Amazon account
and rewrites the unsigned `selling_partner_id` in the redirect back to us.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests
from django.utils import timezone

from sandbox.models import SandboxAuthorization
from sellers.models import Event, Grant, IdentityReview, Seller, TenantMembership
from sellers.services.grants import grant_mark_revoked
from sellers.services.identity import PARTICIPATIONS_PATH
from sellers.services.invitations import invitation_create, reauthorization_link_get_or_create
from sellers.services.reviews import ReviewClosed, identity_review_approve, identity_reviews_expire
from sellers.services.spapi import spapi_request

from .conftest import make_tenant, parse_form, shows_token

pytestmark = pytest.mark.django_db(transaction=True)

HELD = "will confirm your connection"


def _rewrite(url: str, **params) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _approve_on_sandbox(browser, consent: requests.Response, *, account: str, claim: str | None, region: str | None):
    """Approve on the sandbox's consent page as `account`; optionally at another region's page,
    and with the redirect's `selling_partner_id` rewritten to `claim`. Returns our final page."""
    assert consent.status_code == 200 and "Local sandbox" in consent.text, consent.text[:300]
    form = parse_form(consent.text)
    data = {n: v for n, v, kind, _ in form["fields"] if kind != "checkbox"}
    data["scope"] = [v for n, v, kind, _ in form["fields"] if kind == "checkbox"]
    data["selling_partner_id"] = account
    data["decision"] = "approve"
    target = consent.url.split("?")[0]
    if region is not None:
        target = target.replace("/sandbox/na/", f"/sandbox/{region}/")
    back = browser.post(target, data=data, allow_redirects=False, timeout=10)
    assert back.status_code == 302, back.text[:300]
    location = back.headers["Location"]
    if claim is not None:
        location = _rewrite(location, selling_partner_id=claim)
    return browser.get(location, timeout=20)


def by_link(url: str, *, account: str, claim: str | None = None, region: str | None = None) -> requests.Response:
    """A browser follows an invitation or re-authorization link through Amazon and back."""
    browser = requests.Session()
    page = browser.get(url, timeout=10)
    assert page.status_code == 200, page.text[:300]
    csrf = [v for n, v, *_ in parse_form(page.text)["fields"] if n == "csrfmiddlewaretoken"][0]
    start = browser.post(url + "start/", data={"csrfmiddlewaretoken": csrf}, allow_redirects=False, timeout=10)
    assert start.status_code == 302
    consent = browser.get(start.headers["Location"], timeout=10)
    return _approve_on_sandbox(browser, consent, account=account, claim=claim, region=region)


def from_amazon(base: str, tenant, *, named: str, account: str, claim: str | None = None, region: str | None = None):
    """A browser starts at (sandbox) Seller Central, which names `named`, through the Login URI."""
    browser = requests.Session()
    consent = browser.get(
        f"{base}/sandbox/start-from-amazon/",
        params={"tenant": str(tenant.public_id), "region": "na", "selling_partner_id": named},
        timeout=10,
    )
    return _approve_on_sandbox(browser, consent, account=account, claim=claim, region=region)


def store_of(seller: Seller) -> list[str]:
    """The store SP-API shows through the seller's current grant."""
    response = spapi_request(seller=Seller.objects.get(pk=seller.pk), method="GET", path=PARTICIPATIONS_PATH)
    assert response.status_code == 200, response.body
    return sorted({item["storeName"] for item in response.body["payload"]})


def staff_browser(base: str, user) -> requests.Session:
    browser = requests.Session()
    login = browser.get(f"{base}/admin/login/", timeout=10)
    csrf = [v for n, v, *_ in parse_form(login.text)["fields"] if n == "csrfmiddlewaretoken"][0]
    done = browser.post(
        f"{base}/admin/login/",
        data={"csrfmiddlewaretoken": csrf, "username": user.username, "password": "pw-" + user.username, "next": "/admin/"},
        timeout=10,
    )
    assert done.status_code == 200 and "Log out" in done.text, done.text[:300]
    return browser


def decide(browser: requests.Session, base: str, review: IdentityReview, decision: str) -> requests.Response:
    page = browser.get(f"{base}/admin/sellers/identityreview/{review.pk}/change/", timeout=10)
    assert page.status_code == 200
    assert "Connected before" in page.text and "New authorization" in page.text
    form = parse_form(page.text.split('class="spc-decision-form"', 1)[1])
    csrf = [v for n, v, *_ in form["fields"] if n == "csrfmiddlewaretoken"][0]
    return browser.post(
        f"{base}/admin/sellers/identityreview/{review.pk}/decide/",
        data={"csrfmiddlewaretoken": csrf, "decision": decision},
        timeout=20,
    )


@pytest.fixture
def victim(live_amazon, tenant):
    """A seller genuinely connected with their own account A1VICTIM (NA)."""
    invitation = invitation_create(tenant=tenant, name="Victim Shop", email="victim@example.com")
    page = by_link(invitation.url, account="A1VICTIM")
    assert page.status_code == 200 and "all set" in page.text
    seller = Seller.objects.get(pk=invitation.seller.pk)
    assert seller.grant.account_fingerprint["store_names"] == ["Sandbox store A1VICTIM"]
    return seller


@pytest.fixture
def manager(make_user, tenant):
    user = make_user("manager", tenant=tenant, role=TenantMembership.Role.MANAGER)
    user.email = "manager@agency.example"
    user.save(update_fields=["email"])
    return user


def unchanged(seller: Seller, before: Grant) -> bool:
    after = Grant.objects.get(seller=seller)
    return (after.refresh_token, after.version, after.status) == (before.refresh_token, before.version, before.status)


def test_other_region_token_through_the_login_uri_is_held_and_rejected_by_a_manager(live_amazon, tenant, victim, manager, mailoutbox):
    """1(a): approved at the EU consent page, claimed as the NA victim: NA cannot answer."""
    before = Grant.objects.get(seller=victim)
    page = from_amazon(live_amazon, tenant, named="A1VICTIM", account="A1ATTACKER", claim="A1VICTIM", region="eu")
    assert page.status_code == 200 and HELD in page.text and "all set" not in page.text
    assert unchanged(victim, before)
    assert store_of(victim) == ["Sandbox store A1VICTIM"]
    review = IdentityReview.objects.get(seller=victim)
    assert (review.status, review.reason, review.region) == ("open", IdentityReview.Reason.UNVERIFIED, "na")
    assert review.new_fingerprint == {} and review.reference_fingerprint["store_names"] == ["Sandbox store A1VICTIM"]
    assert any("Confirm the Amazon account of Victim Shop" in m.subject for m in mailoutbox)

    answer = decide(staff_browser(live_amazon, manager), live_amazon, review, "reject")
    assert answer.status_code == 200 and "Rejected" in answer.text
    review.refresh_from_db()
    assert (review.status, review.decided_by) == ("rejected", "staff:manager")
    assert review.refresh_token == review.access_token == ""
    assert Event.objects.filter(seller=victim, kind=Event.Kind.IDENTITY_REVIEW_REJECTED, actor="staff:manager").count() == 1
    assert unchanged(victim, before)


def test_revoked_at_amazon_but_not_noticed_is_compared_with_the_recorded_account(live_amazon, tenant, victim):
    """1(b): the old tokens cannot answer; the recorded fingerprint still can."""
    before = Grant.objects.get(seller=victim)
    SandboxAuthorization.objects.filter(selling_partner_id="A1VICTIM").update(revoked_at=timezone.now())
    link, _ = reauthorization_link_get_or_create(seller=victim)
    page = by_link(link.url, account="A1ATTACKER", claim="A1VICTIM")
    assert page.status_code == 200 and HELD in page.text
    assert unchanged(victim, before)
    review = IdentityReview.objects.get(seller=victim)
    assert review.reason == IdentityReview.Reason.CONFLICT
    assert review.new_fingerprint["store_names"] == ["Sandbox store A1ATTACKER"]

    # The genuine seller re-authorizes with their own account: matched, connected at once.
    page = by_link(link.url, account="A1VICTIM")
    assert page.status_code == 200 and "all set" in page.text
    assert Grant.objects.get(seller=victim).version > before.version
    assert store_of(victim) == ["Sandbox store A1VICTIM"]


def test_grant_marked_revoked_is_not_replaced_and_the_genuine_seller_is_not_locked_out(live_amazon, tenant, victim, manager):
    """1(c): a revoked grant is compared too; the genuine seller's own link still works."""
    grant_mark_revoked(seller=victim, reason="test", actor="staff:manager")
    before = Grant.objects.get(seller=victim)
    page = from_amazon(live_amazon, tenant, named="A1VICTIM", account="A1ATTACKER", claim="A1VICTIM")
    assert page.status_code == 200 and HELD in page.text
    assert unchanged(victim, before) and Seller.objects.get(pk=victim.pk).status == Seller.Status.REVOKED
    attack = IdentityReview.objects.get(seller=victim)
    assert attack.reason == IdentityReview.Reason.CONFLICT

    link, _ = reauthorization_link_get_or_create(seller=victim)
    page = by_link(link.url, account="A1VICTIM")
    assert page.status_code == 200 and "all set" in page.text
    assert Seller.objects.get(pk=victim.pk).status == Seller.Status.ACTIVE
    assert store_of(victim) == ["Sandbox store A1VICTIM"]
    assert IdentityReview.objects.filter(seller=victim).count() == 1  # nothing held for the genuine seller


@pytest.mark.parametrize("squat_via", ["invitation", "login_uri"])
def test_squatted_id_goes_to_review_and_a_manager_gives_it_to_its_owner(live_amazon, tenant, manager, squat_via):
    """2: an id bound first by someone else is never a permanent refusal for its owner."""
    if squat_via == "invitation":
        squat = invitation_create(tenant=tenant, name="Squatter Ltd")
        page = by_link(squat.url, account="A1ATTACKER", claim="A1GENUINE")
        squatter = Seller.objects.get(pk=squat.seller.pk)
    else:
        page = from_amazon(live_amazon, tenant, named="A1GENUINE", account="A1ATTACKER", claim="A1GENUINE")
        squatter = Seller.objects.get(tenant=tenant, selling_partner_id="A1GENUINE")
    assert page.status_code == 200 and "all set" in page.text  # a first binding cannot be checked
    assert store_of(squatter) == ["Sandbox store A1ATTACKER"]

    owner = invitation_create(tenant=tenant, name="Genuine Owner")
    page = by_link(owner.url, account="A1GENUINE")
    assert page.status_code == 200 and HELD in page.text
    review = IdentityReview.objects.get(seller=owner.seller)
    assert review.holder == squatter and review.reason == IdentityReview.Reason.CONFLICT

    answer = decide(staff_browser(live_amazon, manager), live_amazon, review, "approve")
    assert answer.status_code == 200 and "Approved" in answer.text
    genuine = Seller.objects.get(pk=owner.seller.pk)
    assert genuine.selling_partner_id == "A1GENUINE" and genuine.status == Seller.Status.ACTIVE
    assert store_of(genuine) == ["Sandbox store A1GENUINE"]
    squatter.refresh_from_db()
    assert squatter.selling_partner_id == "" and squatter.status == Seller.Status.INVITED
    assert not Grant.objects.filter(seller=squatter).exists()
    assert Event.objects.filter(seller=squatter, kind=Event.Kind.ACCOUNT_RELEASED, actor="staff:manager").count() == 1
    assert Event.objects.filter(seller=genuine, kind=Event.Kind.IDENTITY_REVIEW_APPROVED, actor="staff:manager").count() == 1
    review.refresh_from_db()
    assert review.status == "approved" and review.refresh_token == ""


def test_same_account_renewing_through_the_login_uri_is_not_held(live_amazon, tenant, victim):
    before = Grant.objects.get(seller=victim)
    page = from_amazon(live_amazon, tenant, named="A1VICTIM", account="A1VICTIM")
    assert page.status_code == 200 and "all set" in page.text
    assert Grant.objects.get(seller=victim).version > before.version
    assert not IdentityReview.objects.exists()


# --- The review's rules, in process ----------------------------------------------------------


def _open_review(client, tenant) -> IdentityReview:
    from .flow import consent_form, sandbox_decide

    invitation = invitation_create(tenant=tenant, name="Shop")
    consent_path, form = consent_form(client, invitation.url)
    assert client.get(sandbox_decide(client, consent_path, form, spid="A1SHOP")).status_code == 302
    link, _ = reauthorization_link_get_or_create(seller=invitation.seller)
    consent_path, form = consent_form(client, link.url)
    back = sandbox_decide(client, consent_path, form, spid="A1OTHER")
    page = client.get(_rewrite(back, selling_partner_id="A1SHOP"))
    assert page.status_code == 200 and HELD in page.content.decode()
    return IdentityReview.objects.get(seller=invitation.seller)


@pytest.mark.django_db
def test_viewers_see_the_review_but_cannot_decide_and_other_tenants_get_404(client, tenant, make_user):
    review = _open_review(client, tenant)
    viewer = make_user("viewer", tenant=tenant, role=TenantMembership.Role.VIEWER)
    outsider = make_user("outsider", tenant=make_tenant("globex"), role=TenantMembership.Role.OWNER)
    url = f"/admin/sellers/identityreview/{review.pk}/"
    client.force_login(viewer)
    page = client.get(url + "change/")
    assert page.status_code == 200 and "Sandbox store A1OTHER" in page.content.decode()
    assert "Approve" not in page.content.decode()
    assert client.post(url + "decide/", {"decision": "approve"}).status_code == 404
    seller_page = client.get(f"/admin/sellers/seller/{review.seller.pk}/change/").content.decode()
    assert "A new authorization for A1SHOP waits for a decision" in seller_page and url + "change/" in seller_page
    client.force_login(outsider)
    assert client.get(url + "change/").status_code == 404
    assert client.post(url + "decide/", {"decision": "approve"}).status_code == 404
    review.refresh_from_db()
    assert review.status == "open" and review.refresh_token.startswith("Atzr|")


@pytest.mark.django_db
def test_held_tokens_never_reach_the_review_page(client, tenant, make_user):
    review = _open_review(client, tenant)
    client.force_login(make_user("boss", tenant=tenant))
    html = client.get(f"/admin/sellers/identityreview/{review.pk}/change/").content.decode()
    assert review.refresh_token not in html and review.access_token not in html and not shows_token(html)


@pytest.mark.django_db
def test_a_review_not_decided_in_seven_days_expires_and_discards_its_tokens(client, tenant):
    review = _open_review(client, tenant)
    assert identity_reviews_expire(now=timezone.now() + timedelta(days=6)) == 0
    assert identity_reviews_expire(now=timezone.now() + timedelta(days=7, minutes=1)) == 1
    review.refresh_from_db()
    assert review.status == "expired" and review.refresh_token == "" and review.decided_by == "system"
    assert Event.objects.filter(seller=review.seller, kind=Event.Kind.IDENTITY_REVIEW_EXPIRED).count() == 1
    with pytest.raises(ReviewClosed):
        identity_review_approve(review=review, actor="staff:late")


@pytest.mark.django_db
def test_a_review_past_its_deadline_cannot_be_approved(client, tenant):
    review = _open_review(client, tenant)
    before = Grant.objects.get(seller=review.seller)
    IdentityReview.objects.filter(pk=review.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(ReviewClosed):
        identity_review_approve(review=review, actor="staff:late")
    review.refresh_from_db()
    assert review.status == "expired" and review.refresh_token == ""
    assert unchanged(review.seller, before)


@pytest.mark.django_db
def test_expiry_runs_hourly_from_the_schedules(client, tenant):
    from sellers.schedules import SCHEDULES
    from sellers.tasks import identity_reviews_expire_task

    assert any(s.func == "sellers.tasks.identity_reviews_expire_task" and s.minutes == 60 for s in SCHEDULES)
    review = _open_review(client, tenant)
    IdentityReview.objects.filter(pk=review.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert identity_reviews_expire_task() == "expired 1 identity review(s)"
    assert identity_reviews_expire_task() == "expired 0 identity review(s)"


# --- Holes found by trying harder ------------------------------------------------------------


def _callback(client, link_url: str, *, account: str, claim: str | None = None, strip: bool = False):
    """In process: approve as `account`; rewrite or strip the redirect's seller id; our page."""
    from .flow import consent_form, sandbox_decide

    consent_path, form = consent_form(client, link_url)
    back = sandbox_decide(client, consent_path, form, spid=account)
    parts = urlsplit(back)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    if claim is not None:
        query["selling_partner_id"] = claim
    if strip:
        query.pop("selling_partner_id", None)
    page = client.get(f"{parts.path}?{urlencode(query)}")
    if page.status_code == 302:
        page = client.get(page["Location"])
    return page


def _seed_connected(client, tenant, name: str, account: str) -> Seller:
    """Connected through the scope model's flow: the callback names no seller id."""
    invitation = invitation_create(tenant=tenant, name=name)
    page = _callback(client, invitation.url, account=account, strip=True)
    assert page.status_code == 200 and "all set" in page.content.decode()
    seller = Seller.objects.get(pk=invitation.seller.pk)
    assert seller.selling_partner_id == "" and seller.grant.account_fingerprint["store_names"] == [f"Sandbox store {account}"]
    return seller


@pytest.mark.django_db
def test_a_grant_without_a_seller_id_is_compared_before_an_unheld_id_replaces_it(client, tenant):
    seller = _seed_connected(client, tenant, "Seed Shop", "A1SEED")
    before = Grant.objects.get(seller=seller)
    link, _ = reauthorization_link_get_or_create(seller=seller)
    page = _callback(client, link.url, account="A1ATTACKER", claim="A1NOBODY")
    assert page.status_code == 200 and HELD in page.content.decode()
    assert unchanged(seller, before) and Seller.objects.get(pk=seller.pk).selling_partner_id == ""
    assert IdentityReview.objects.get(seller=seller).reason == IdentityReview.Reason.CONFLICT


@pytest.mark.django_db
def test_approving_a_review_without_an_id_never_releases_another_seller(client, tenant):
    first = _seed_connected(client, tenant, "Seed One", "A1ONE")
    bystander = _seed_connected(client, tenant, "Seed Two", "A1TWO")
    kept = Grant.objects.get(seller=bystander)
    link, _ = reauthorization_link_get_or_create(seller=first)
    assert HELD in _callback(client, link.url, account="A1ATTACKER", strip=True).content.decode()
    review = IdentityReview.objects.get(seller=first)
    assert review.selling_partner_id == "" and review.holder is None
    identity_review_approve(review=review, actor="staff:boss")
    assert unchanged(bystander, kept)
    assert not Event.objects.filter(kind=Event.Kind.ACCOUNT_RELEASED).exists()


@pytest.mark.django_db
def test_an_approved_unverifiable_review_leaves_the_new_accounts_fingerprint(client, tenant, amazon_calls):
    victim = _seed_connected(client, tenant, "Shop", "A1SHOP")
    Seller.objects.filter(pk=victim.pk).update(selling_partner_id="A1SHOP")
    link, _ = reauthorization_link_get_or_create(seller=victim)
    # SP-API fails once, for the new token: nothing can be told, the authorization is held.
    amazon_calls.script(url_contains="/sellers/v1/marketplaceParticipations", status=503, body={"errors": []})
    assert HELD in _callback(client, link.url, account="A1SHOP").content.decode()
    review = IdentityReview.objects.get(seller=victim)
    assert review.reason == IdentityReview.Reason.UNVERIFIED and review.new_fingerprint == {}
    identity_review_approve(review=review, actor="staff:boss")
    grant = Grant.objects.get(seller=victim)
    assert grant.account_fingerprint["store_names"] == ["Sandbox store A1SHOP"]  # asked again on approval


@pytest.mark.django_db
def test_an_unknown_fingerprint_never_keeps_the_replaced_accounts(client, tenant):
    from sellers.amazon import TokenResponse
    from sellers.services.grants import grant_store_authorization

    seller = _seed_connected(client, tenant, "Shop", "A1SHOP")
    grant_store_authorization(seller=seller, token=TokenResponse(access_token="Atza|x", expires_in=60, refresh_token="Atzr|y"))
    grant = Grant.objects.get(seller=seller)
    assert grant.account_fingerprint == {} and grant.account_checked_at is None


@pytest.mark.django_db
def test_a_review_cannot_be_approved_once_the_connection_changed(client, tenant):
    review = _open_review(client, tenant)
    link, _ = reauthorization_link_get_or_create(seller=review.seller)
    assert "all set" in _callback(client, link.url, account="A1SHOP").content.decode()  # verified renewal
    renewed = Grant.objects.get(seller=review.seller)
    with pytest.raises(ReviewClosed, match="changed since"):
        identity_review_approve(review=review, actor="staff:boss")
    assert unchanged(review.seller, renewed)
    assert IdentityReview.objects.get(pk=review.pk).status == "open"  # still rejectable


@pytest.mark.django_db(transaction=True)  # emails leave on commit
def test_repeated_attempts_of_one_account_keep_one_review_and_one_email(client, tenant, make_user, mailoutbox):
    user = make_user("boss", tenant=tenant)
    user.email = "boss@agency.example"
    user.save(update_fields=["email"])
    review = _open_review(client, tenant)
    link, _ = reauthorization_link_get_or_create(seller=review.seller)
    assert HELD in _callback(client, link.url, account="A1OTHER", claim="A1SHOP").content.decode()
    assert IdentityReview.objects.filter(seller=review.seller).count() == 1
    assert len([m for m in mailoutbox if "Confirm the Amazon account" in m.subject]) == 1


def _corrupt(model, pk: int, field: str) -> None:
    from django.db import connection

    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {field} = %s WHERE id = %s", ["gAAAAABnot-a-valid-fernet-token", pk])


@pytest.mark.django_db
def test_an_undecryptable_grant_does_not_stop_its_owner_reauthorizing(client, tenant):
    seller = _seed_connected(client, tenant, "Shop", "A1SHOP")
    Seller.objects.filter(pk=seller.pk).update(selling_partner_id="A1SHOP")
    _corrupt(Grant, seller.grant.pk, "refresh_token")
    _corrupt(Grant, seller.grant.pk, "access_token")
    link, _ = reauthorization_link_get_or_create(seller=seller)
    page = _callback(client, link.url, account="A1SHOP")
    assert page.status_code == 200 and "all set" in page.content.decode()
    assert Grant.objects.get(seller=seller).refresh_token.startswith("Atzr|")


@pytest.mark.django_db
def test_an_undecryptable_review_still_expires(client, tenant):
    first = _open_review(client, tenant)
    _corrupt(IdentityReview, first.pk, "refresh_token")
    IdentityReview.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert identity_reviews_expire() == 1
    assert IdentityReview.objects.get(pk=first.pk).status == "expired"


@pytest.mark.django_db(transaction=True)  # emails leave on commit
def test_two_unverifiable_attempts_are_two_reviews(client, tenant, make_user, amazon_calls, mailoutbox):
    """Nobody knows whose account an unverifiable authorization is: a second one must never
    replace the first's tokens under staff's eyes."""
    user = make_user("boss", tenant=tenant)
    user.email = "boss@agency.example"
    user.save(update_fields=["email"])
    review = _open_review(client, tenant)
    link, _ = reauthorization_link_get_or_create(seller=review.seller)
    for account in ("A1SHOP", "A1OTHER"):
        amazon_calls.script(url_contains="/sellers/v1/marketplaceParticipations", status=503, body={"errors": []})
        assert HELD in _callback(client, link.url, account=account, claim="A1SHOP").content.decode()
    unverified = IdentityReview.objects.filter(seller=review.seller, new_fingerprint={})
    assert unverified.count() == 2
    assert len([m for m in mailoutbox if "Confirm the Amazon account" in m.subject]) == 3


@pytest.mark.django_db
def test_approval_is_refused_when_the_held_tokens_now_show_another_account(client, tenant, amazon_calls):
    review = _open_review(client, tenant)
    before = Grant.objects.get(seller=review.seller)
    amazon_calls.script(
        url_contains="/sellers/v1/marketplaceParticipations",
        body={"payload": [{"marketplace": {"id": "ATVPDKIKX0DER"}, "storeName": "Someone Else"}]},
    )
    with pytest.raises(ReviewClosed, match="another account"):
        identity_review_approve(review=review, actor="staff:boss")
    assert unchanged(review.seller, before) and IdentityReview.objects.get(pk=review.pk).status == "open"


@pytest.mark.django_db
def test_approval_is_refused_when_the_id_was_taken_meanwhile(client, tenant):
    from .conftest import make_seller

    owner = invitation_create(tenant=tenant, name="Owner")
    squatter = _seed_connected(client, tenant, "Squatter", "A1SQUAT")
    Seller.objects.filter(pk=squatter.pk).update(selling_partner_id="A1WANTED")
    assert HELD in _callback(client, owner.url, account="A1WANTED", claim="A1WANTED").content.decode()
    review = IdentityReview.objects.get(seller=owner.seller)
    make_seller(tenant, "Late binder", spid="A1WANTED", region="eu")  # another region: not a holder
    Seller.objects.filter(pk=squatter.pk).update(selling_partner_id="")  # the holder let it go …
    late = make_seller(tenant, "Third", spid="A1WANTED")  # … and a third seller took it
    with pytest.raises(ReviewClosed, match="another seller"):
        identity_review_approve(review=review, actor="staff:boss")
    assert Seller.objects.get(pk=late.pk).selling_partner_id == "A1WANTED"
    assert Seller.objects.get(pk=owner.seller.pk).selling_partner_id == ""


@pytest.mark.django_db
def test_a_grant_stored_by_another_callback_after_the_check_is_never_overwritten(client, tenant, monkeypatch):
    """Two first bindings at once: the one whose check saw no grant must not replace the other's."""
    import authflow.flows as flows

    from .conftest import make_grant

    invitation = invitation_create(tenant=tenant, name="Raced")
    real_check = flows._account_check

    def check_then_lose_the_race(*, state, target, new):
        result = real_check(state=state, target=target, new=new)
        make_grant(target.seller, refresh_token="Atzr|the-other-callback-0123456789")
        return result

    monkeypatch.setattr(flows, "_account_check", check_then_lose_the_race)
    page = _callback(client, invitation.url, account="A1RACE")
    assert page.status_code == 400 and "at the same moment" in page.content.decode()
    assert Grant.objects.get(seller=invitation.seller).refresh_token == "Atzr|the-other-callback-0123456789"
