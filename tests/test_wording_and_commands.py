"""What commands and messages say: `invite` refuses a bad address and reuses a seller on request, a
seller who never connected is not told to re-authorize, and the CSV export reads the same from
the admin and from the command line."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from sellers.models import Event, Invitation, Seller, TenantMembership
from sellers.services.spapi import ReauthorizationRequired, spapi_request

from .conftest import INVENTORY, ORDERS, make_grant, make_seller, read_output

pytestmark = pytest.mark.django_db


def invite(*args: str) -> list[str]:
    return read_output(lambda stdout: call_command("invite", "--tenant", "acme", *args, stdout=stdout)).strip().splitlines()


@pytest.mark.parametrize("email", ["notanemail", "seller@", "two@@example.com", "a b@example.com"])
def test_invite_refuses_an_address_that_is_not_one(tenant, email):
    with pytest.raises(CommandError) as refused:
        invite("--name", "Shop", "--email", email)
    assert f"--email {email!r} is not an email address." == str(refused.value)
    assert not Seller.objects.exists() and not Invitation.objects.exists()


def test_invite_accepts_an_address_and_reuse_keeps_one_seller_and_its_open_link(tenant):
    first = invite("--name", "Demo Seller", "--email", "Seller@Example.com", "--reuse")
    seller = Seller.objects.get()
    assert seller.email == "Seller@Example.com" and first[-1].startswith("http://testserver/connect/")

    again = invite("--name", "Demo Seller", "--email", "seller@example.com", "--reuse")
    assert again[-1] == first[-1]
    assert again[0].startswith(f"Demo Seller is already a seller of {tenant.name} (Invited); its link is valid until")
    assert Seller.objects.count() == 1 and Invitation.objects.count() == 1

    # The link used up (connected): the next run gets a new link for the same seller.
    Invitation.objects.update(completed_at=seller.created_at)
    third = invite("--name", "Demo Seller", "--email", "seller@example.com", "--reuse")
    assert third[-1] != first[-1] and "a new link" in third[0]
    assert Seller.objects.count() == 1 and Invitation.objects.count() == 2

    # Without --reuse, or another name: another seller, as before.
    invite("--name", "Demo Seller", "--email", "seller@example.com")
    invite("--name", "Other Seller", "--reuse")
    assert Seller.objects.count() == 3


def test_a_seller_who_never_connected_is_not_told_to_reauthorize(tenant, amazon_calls):
    seller = make_seller(tenant, "Deny Seller", spid="A1NEVER")  # known by its id, never authorized
    with pytest.raises(ReauthorizationRequired) as caught:
        spapi_request(seller=seller, method="GET", path="/sellers/v1/marketplaceParticipations")
    message = str(caught.value)
    assert message == "Deny Seller has not connected yet: the seller must authorize the app with their link."
    assert caught.value.never_authorized and caught.value.link.purpose == Invitation.Purpose.ONBOARDING
    assert amazon_calls.calls == []
    with pytest.raises(CommandError) as command:
        call_command("spapi", "A1NEVER", "GET", "/sellers/v1/marketplaceParticipations", "--tenant", "acme",
                     stdout=io.StringIO())
    assert str(command.value).startswith("Deny Seller has not connected yet: the seller must authorize the app with their link.")
    assert "Send the seller this link: http://testserver/connect/" in str(command.value)
    assert "re-authoriz" not in str(command.value).lower()


def test_a_revoked_seller_is_still_told_to_reauthorize(tenant, amazon_calls):
    seller = make_seller(tenant, "Gone Seller", spid="A1GONE")
    grant = make_grant(seller)
    grant.status = grant.Status.REVOKED
    grant.save()
    with pytest.raises(ReauthorizationRequired) as caught:
        spapi_request(seller=seller, method="GET", path="/sellers/v1/marketplaceParticipations")
    assert str(caught.value).startswith("Gone Seller (A1GONE) must re-authorize the app")
    assert not caught.value.never_authorized


def test_csv_export_reads_the_same_from_the_admin_and_the_command_line(tenant, make_user, client):
    confirmed = make_seller(tenant, "Confirmed Shop", spid="A1YES")
    make_grant(confirmed, scopes=[ORDERS, INVENTORY], confirmed=True)
    assumed = make_seller(tenant, "Assumed Shop", spid="A1NO")
    make_grant(assumed, scopes=[ORDERS], confirmed=False)
    client.force_login(make_user("manny", tenant=tenant, role=TenantMembership.Role.MANAGER))
    response = client.post(
        reverse("admin:sellers_seller_changelist"),
        {"action": "export_csv", "_selected_action": [confirmed.pk, assumed.pk], "index": 0},
    )
    assert response["Content-Type"].startswith("text/csv")
    from_admin = list(csv.DictReader(io.StringIO(response.content.decode())))
    from_command = list(csv.DictReader(io.StringIO(read_output(
        lambda stdout: call_command("export_grants", "--tenant", "acme", "--format", "csv", stdout=stdout)))))
    assert [row["scopes_confirmed"] for row in from_admin] == ["no", "yes"]
    assert from_admin == from_command
    assert Event.objects.filter(tenant=tenant, kind=Event.Kind.EXPORTED).count() == 1


def test_admin_connection_test_of_a_seller_never_connected_names_it_once(tenant, make_user, client, amazon_calls):
    seller = make_seller(tenant, "Deny Seller")
    client.force_login(make_user("manny", tenant=tenant, role=TenantMembership.Role.MANAGER))
    response = client.post(
        reverse("admin:sellers_seller_changelist"),
        {"action": "test_connection", "_selected_action": [seller.pk], "index": 0},
        follow=True,
    )
    said = [str(message) for message in response.context["messages"]]
    assert said == ["Connection test: 0 connected, 0 failed, 1 not authorized yet (nothing to test)."]
    assert not [text for text in said if "re-authorize" in text or "Deny Seller: Deny Seller" in text]
    assert amazon_calls.calls == []
