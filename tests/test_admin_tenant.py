"""The tenant page (owners): app registration with write-only secrets, scope requirements that
re-derive seller statuses at once, members and roles."""

from __future__ import annotations

import pytest
from django.urls import reverse

from sellers.models import Event, ScopeRequirement, Seller, Tenant, TenantMembership
from sellers.services.requirements import tenant_requirements_changed
from tests.conftest import FINANCE, INVENTORY, ORDERS, REPORTS, make_grant, make_seller, make_tenant

Role = TenantMembership.Role


@pytest.fixture
def acme(db):
    tenant = make_tenant("acme", name="Acme Agency")
    tenant.webhook_secret = "whsec-acme-0123456789"
    tenant.save()
    return tenant


@pytest.fixture
def owner(acme, make_user, client):
    user = make_user("olga", tenant=acme, role=Role.OWNER)
    client.force_login(user)
    return user


def change_url(tenant):
    return reverse("admin:sellers_tenant_change", args=[tenant.pk])


def post_data(tenant, *, requirements=None, members=None, **fields) -> dict:
    """The tenant form as the browser would send it (every inline row, management forms)."""
    tenant.refresh_from_db()
    data = {
        "name": tenant.name,
        "slug": tenant.slug,
        "application_id": tenant.application_id,
        "client_id": tenant.client_id,
        "redirect_uri": tenant.redirect_uri,
        "registered_scopes": list(tenant.registered_scopes),
        "webhook_url": tenant.webhook_url,
        "new_client_secret": "",
        "new_client_secret_expires_at": "",
        "new_webhook_secret": "",
    }
    if tenant.is_draft:
        data["is_draft"] = "on"
    existing = list(ScopeRequirement.objects.filter(tenant=tenant).order_by("id"))
    wanted = requirements if requirements is not None else [(r.scope, r.kind) for r in existing]
    by_scope = {r.scope: r for r in existing}
    rows = []
    for r in existing:
        rows.append((r, r.scope in {s for s, _ in wanted}))
    new = [(s, k) for s, k in wanted if s not in by_scope]
    prefix = "scope_requirements"
    data[f"{prefix}-TOTAL_FORMS"] = str(len(existing) + len(new))
    data[f"{prefix}-INITIAL_FORMS"] = str(len(existing))
    i = 0
    for r, keep in rows:
        kind = dict(wanted).get(r.scope, r.kind)
        data.update({f"{prefix}-{i}-id": r.pk, f"{prefix}-{i}-tenant": tenant.pk, f"{prefix}-{i}-scope": r.scope,
                     f"{prefix}-{i}-kind": kind, f"{prefix}-{i}-reason": r.reason})
        if not keep:
            data[f"{prefix}-{i}-DELETE"] = "on"
        i += 1
    for scope, kind in new:
        data.update({f"{prefix}-{i}-tenant": tenant.pk, f"{prefix}-{i}-scope": scope, f"{prefix}-{i}-kind": kind,
                     f"{prefix}-{i}-reason": f"Because {scope}."})
        i += 1
    memberships = list(TenantMembership.objects.filter(tenant=tenant).order_by("id"))
    wanted_members = members if members is not None else [(m.user_id, m.role) for m in memberships]
    existing_users = {m.user_id: m for m in memberships}
    prefix = "memberships"
    new_members = [(u, r) for u, r in wanted_members if u not in existing_users]
    data[f"{prefix}-TOTAL_FORMS"] = str(len(memberships) + len(new_members))
    data[f"{prefix}-INITIAL_FORMS"] = str(len(memberships))
    wanted_roles = dict(wanted_members)
    for i, m in enumerate(memberships):
        data.update({f"{prefix}-{i}-id": m.pk, f"{prefix}-{i}-tenant": tenant.pk, f"{prefix}-{i}-user": m.user_id,
                     f"{prefix}-{i}-role": wanted_roles.get(m.user_id, m.role)})
        if m.user_id not in wanted_roles:
            data[f"{prefix}-{i}-DELETE"] = "on"
    for j, (user_id, role) in enumerate(new_members, start=len(memberships)):
        data.update({f"{prefix}-{j}-tenant": tenant.pk, f"{prefix}-{j}-user": user_id, f"{prefix}-{j}-role": role})
    data.update(fields)
    return data


def saved(response):
    assert response.status_code == 302, _errors(response)
    return response


def _errors(response):
    context = getattr(response, "context", None) or {}
    form = context.get("adminform")
    formsets = context.get("inline_admin_formsets") or []
    return (form.form.errors if form else None, [fs.formset.errors for fs in formsets],
            [fs.formset.non_form_errors() for fs in formsets])


def test_owner_page_never_shows_secrets(acme, owner, client):
    html = client.get(change_url(acme)).content.decode()
    assert acme.client_secret not in html and "whsec-acme" not in html
    assert 'name="new_client_secret"' in html and 'name="client_secret"' not in html
    assert 'readonly">set</div>' in html  # shown as a state, never as a value


def test_setting_a_new_client_secret_keeps_the_previous_one(acme, owner, client):
    old = acme.client_secret
    saved(client.post(change_url(acme), post_data(acme, new_client_secret="brand-new-secret-987654321")))
    acme.refresh_from_db()
    assert acme.client_secret == "brand-new-secret-987654321"
    assert acme.previous_client_secret == old
    assert Event.objects.get(tenant=acme, kind=Event.Kind.SECRET_ROTATED).actor == "staff:olga"
    html = client.get(change_url(acme)).content.decode()
    assert "brand-new-secret" not in html and old not in html
    assert "previous secret kept" in html


def test_a_malformed_secret_is_refused_and_not_echoed(acme, owner, client):
    response = client.post(change_url(acme), post_data(acme, new_client_secret="two words-secret-xyz"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "A client secret is one line without spaces." in html and "two words-secret" not in html
    acme.refresh_from_db()
    assert acme.client_secret == "secret-acme-0123456789"


def test_an_empty_secret_field_keeps_the_secrets(acme, owner, client):
    saved(client.post(change_url(acme), post_data(acme, name="Acme Renamed")))
    acme.refresh_from_db()
    assert (acme.name, acme.client_secret, acme.webhook_secret) == ("Acme Renamed", "secret-acme-0123456789", "whsec-acme-0123456789")
    assert not Event.objects.filter(kind=Event.Kind.SECRET_ROTATED).exists()


NEW_WEBHOOK_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="  # 32 bytes, base64


def test_setting_the_webhook_secret(acme, owner, client):
    page = client.get(change_url(acme)).content.decode()
    assert "set, in the form used before whsec_ secrets" in page  # the fixture's older secret
    saved(client.post(change_url(acme), post_data(acme, webhook_url="https://hooks.example/x", new_webhook_secret=NEW_WEBHOOK_SECRET)))
    acme.refresh_from_db()
    assert (acme.webhook_url, acme.webhook_secret) == ("https://hooks.example/x", NEW_WEBHOOK_SECRET)
    page = client.get(change_url(acme)).content.decode()
    assert "QUJDREVG" not in page and "form used before" not in page


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("hunter2-but-longer-than-that", "starts with whsec_"),
        ("whsec_not base64!", "is base64"),
        ("whsec_c2hvcnQ=", "this one holds 5"),
    ],
)
def test_a_webhook_secret_that_is_not_a_standard_webhooks_secret_is_refused(acme, owner, client, typed, problem):
    response = client.post(change_url(acme), post_data(acme, new_webhook_secret=typed))
    assert response.status_code == 200 and problem in response.content.decode()
    assert typed not in response.content.decode()
    acme.refresh_from_db()
    assert acme.webhook_secret == "whsec-acme-0123456789"


@pytest.mark.parametrize(
    "url", ["http://hooks.example/x", "https://127.0.0.1:6379/", "https://169.254.169.254/latest/", "https://localhost/x"]
)
def test_a_webhook_url_inside_our_network_is_refused(acme, owner, client, url):
    response = client.post(change_url(acme), post_data(acme, webhook_url=url))
    assert response.status_code == 200
    assert "The webhook URL must" in response.content.decode()
    acme.refresh_from_db()
    assert acme.webhook_url == ""


def test_another_tenants_client_id_cannot_be_taken(acme, owner, client):
    other = make_tenant("globex", name="Globex")
    response = client.post(change_url(acme), post_data(acme, client_id=other.client_id))
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    acme.refresh_from_db()
    assert acme.client_id != other.client_id


def test_adding_a_required_scope_makes_sellers_partial_at_once(acme, owner, client):
    holder = make_seller(acme, "Has Finance")
    make_grant(holder, scopes=[ORDERS, INVENTORY, FINANCE])
    lacking = [make_seller(acme, f"Lacks {i}") for i in range(3)]
    for seller in lacking:
        make_grant(seller, scopes=[ORDERS, INVENTORY])
    pending = make_seller(acme, "Pending")
    other = make_tenant("globex")
    outsider = make_seller(other, "Outsider")
    make_grant(outsider, scopes=[ORDERS, INVENTORY])

    wanted = [(ORDERS, "required"), (INVENTORY, "required"), (REPORTS, "optional"), (FINANCE, "required")]
    response = client.post(change_url(acme), post_data(acme, requirements=wanted), follow=True)
    assert response.redirect_chain, _errors(response)
    body = response.content.decode()
    assert "3 seller(s) changed status; 3 seller(s) of Acme Agency are now partial" in body
    statuses = dict(Seller.objects.filter(tenant=acme).values_list("name", "status"))
    assert statuses == {"Has Finance": "active", "Lacks 0": "partial", "Lacks 1": "partial", "Lacks 2": "partial", "Pending": "invited"}
    assert Seller.objects.get(pk=outsider.pk).status == "active"
    changed = Event.objects.filter(kind=Event.Kind.STATUS_CHANGED, tenant=acme)
    assert changed.count() == 3 and {e.actor for e in changed} == {"staff:olga"}
    event = Event.objects.get(kind=Event.Kind.REQUIREMENTS_CHANGED)
    assert event.data["added"] == [FINANCE] and event.data["changed"] == 3
    assert not Event.objects.filter(seller=pending).exists()

    # Making it optional again restores them.
    wanted[-1] = (FINANCE, "optional")
    client.post(change_url(acme), post_data(acme, requirements=wanted))
    assert set(Seller.objects.filter(tenant=acme, grant__isnull=False).values_list("status", flat=True)) == {"active"}


def test_unchanged_requirements_touch_no_seller(acme, owner, client):
    make_grant(make_seller(acme, "Steady"))
    saved(client.post(change_url(acme), post_data(acme)))
    assert not Event.objects.filter(kind=Event.Kind.REQUIREMENTS_CHANGED).exists()


def test_requirements_service_reads_no_token(acme, monkeypatch):
    make_grant(make_seller(acme, "Quiet"), scopes=[ORDERS])
    ScopeRequirement.objects.filter(tenant=acme, scope=INVENTORY).delete()
    from sellers import fields

    monkeypatch.setattr(fields.emf, "decrypt_str", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decrypted")))
    assert tenant_requirements_changed(tenant=acme, actor="staff:x") == 1
    assert Seller.objects.get(name="Quiet").status == "active"


def test_owner_adds_and_changes_members(acme, owner, client, make_user, django_user_model):
    newcomer = make_user("nina")  # staff without a tenant yet
    viewer = make_user("vera", tenant=acme, role=Role.VIEWER)
    saved(client.post(change_url(acme), post_data(acme, members=[(owner.pk, "owner"), (viewer.pk, "manager"), (newcomer.pk, "viewer")])))
    roles = dict(TenantMembership.objects.filter(tenant=acme).values_list("user__username", "role"))
    assert roles == {"olga": "owner", "vera": "manager", "nina": "viewer"}


def test_accounts_without_admin_access_are_not_offered_as_members(acme, owner, client, django_user_model):
    django_user_model.objects.create_user(username="customer_account_zed", password="pw", is_staff=False)
    assert "customer_account_zed" not in client.get(change_url(acme)).content.decode()


@pytest.mark.parametrize("flags", [{"is_staff": False}, {"is_active": False}, {"is_superuser": True}])
def test_an_existing_member_of_any_kind_does_not_block_saving_the_tenant(acme, owner, client, make_user, django_user_model, flags):
    colleague = make_user("colin", tenant=acme, role=Role.VIEWER)
    django_user_model.objects.filter(pk=colleague.pk).update(**flags)
    saved(client.post(change_url(acme), post_data(acme, name="Acme Renamed")))
    acme.refresh_from_db()
    assert acme.name == "Acme Renamed"
    assert TenantMembership.objects.filter(tenant=acme, user=colleague).exists()


def test_an_owner_of_two_tenants_cannot_bring_an_inactive_member_of_one_into_the_other(acme, owner, client, make_user, django_user_model):
    globex = make_tenant("globex")
    TenantMembership.objects.create(tenant=globex, user=owner, role=Role.OWNER)
    former = make_user("fred", tenant=globex, role=Role.VIEWER)
    django_user_model.objects.filter(pk=former.pk).update(is_active=False)
    response = client.post(change_url(acme), post_data(acme, members=[(owner.pk, "owner"), (former.pk, "viewer")]))
    assert response.status_code == 200
    assert "Only active staff accounts" in response.content.decode()
    assert not TenantMembership.objects.filter(tenant=acme, user=former).exists()


def test_owner_cannot_pick_users_of_other_tenants(acme, owner, client, make_user):
    stranger = make_user("stanislaw_outsider", tenant=make_tenant("globex"), role=Role.OWNER)
    response = client.post(change_url(acme), post_data(acme, members=[(owner.pk, "owner"), (stranger.pk, "viewer")]))
    assert response.status_code == 200  # the form is shown again with an error
    assert not TenantMembership.objects.filter(tenant=acme, user=stranger).exists()
    assert "stanislaw_outsider" not in response.content.decode()


def test_the_last_owner_cannot_be_removed(acme, owner, client, make_user):
    viewer = make_user("vic", tenant=acme, role=Role.VIEWER)
    response = client.post(change_url(acme), post_data(acme, members=[(owner.pk, "viewer"), (viewer.pk, "viewer")]))
    assert response.status_code == 200 and "A tenant keeps at least one owner." in response.content.decode()
    assert TenantMembership.objects.get(tenant=acme, user=owner).role == "owner"


@pytest.mark.parametrize("role", [Role.MANAGER, Role.VIEWER])
def test_managers_and_viewers_cannot_reach_the_tenant_page(acme, make_user, client, role):
    client.force_login(make_user("someone", tenant=acme, role=role))
    assert client.get(reverse("admin:sellers_tenant_changelist")).status_code == 403
    assert client.get(change_url(acme)).status_code == 404
    assert client.post(change_url(acme), post_data(acme, new_client_secret="evil-secret-000000")).status_code == 404
    acme.refresh_from_db()
    assert acme.client_secret == "secret-acme-0123456789"


def test_owners_cannot_add_or_delete_tenants(acme, owner, client):
    assert client.get(reverse("admin:sellers_tenant_add")).status_code == 403
    assert client.post(reverse("admin:sellers_tenant_delete", args=[acme.pk]), {"post": "yes"}).status_code == 403
    assert Tenant.objects.filter(pk=acme.pk).exists()
