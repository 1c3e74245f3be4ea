"""The token endpoint is the hot path of every program that calls SP-API through spconnect: for a
valid stored token it costs two queries (the key, the connection with its grant) and no call to
Amazon. Counted in-process: the live server's queries run on another thread's connection."""

from __future__ import annotations

import pytest
from django.test import Client

from api.keys import api_key_create

from .conftest import make_grant, make_seller

pytestmark = pytest.mark.django_db


def test_valid_stored_token_costs_two_queries_and_no_lwa_call(tenant, amazon_calls, django_assert_max_num_queries):
    seller = make_seller(tenant, "Hot Path", spid="A1HOT")
    grant = make_grant(seller, expires_in=3600)
    _, key = api_key_create(tenant=tenant, name="hot", permissions=["tokens:read"], actor="test")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    url = f"/api/v1/connections/{seller.public_id}/access-token"
    assert client.post(url, content_type="application/json").status_code == 200  # the first use of the key also records last_used_at

    for body in (None, {"min_ttl_seconds": 600}):
        with django_assert_max_num_queries(2) as captured:
            response = client.post(url, body, content_type="application/json")
        assert response.status_code == 200
        assert response.json()["access_token"] == grant.access_token
        sql = [q["sql"] for q in captured.captured_queries]
        assert '"api_apikey"' in sql[0] and '"sellers_grant"' in sql[1], sql
    assert amazon_calls.token_calls == []


def test_last_used_at_costs_one_update_a_minute(tenant, django_assert_num_queries):
    _, key = api_key_create(tenant=tenant, name="list", permissions=["connections:read"], actor="test")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    with django_assert_num_queries(3):  # the key, UPDATE last_used_at, the (empty) page
        assert client.get("/api/v1/connections").status_code == 200
    with django_assert_num_queries(2):
        assert client.get("/api/v1/connections").status_code == 200


def test_the_token_query_reads_what_the_orm_would(tenant, other_tenant):
    """The hot path reads its one row without the ORM compiler: same values, same types, on
    either database (UUIDs and datetimes come back as SQLite strings without the converters)."""
    from api.connections import TOKEN_PATH_GRANT_FIELDS, TOKEN_PATH_SELLER_FIELDS, connection_for_token, grant_of
    from sellers.models import Grant, Seller
    from sellers.services.tokens import TokenUnavailable

    seller = make_seller(tenant, "Typed", spid="A1TYPED", region="eu")
    make_grant(seller, expires_in=1234)
    pending = make_seller(tenant, "Pending")
    read = connection_for_token(tenant_id=tenant.pk, connection_id=seller.public_id)
    orm = Seller.objects.select_related("grant").get(pk=seller.pk)
    for name in TOKEN_PATH_SELLER_FIELDS:
        attname = Seller._meta.get_field(name).attname
        assert getattr(read, attname) == getattr(orm, attname) and type(getattr(read, attname)) is type(getattr(orm, attname))
    for name in TOKEN_PATH_GRANT_FIELDS:
        attname = Grant._meta.get_field(name).attname
        assert getattr(read.grant, attname) == getattr(orm.grant, attname)
    assert read.grant.seller is read
    assert grant_of(connection_for_token(tenant_id=tenant.pk, connection_id=pending.public_id)) is None
    assert connection_for_token(tenant_id=other_tenant.pk, connection_id=seller.public_id) is None

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("UPDATE sellers_grant SET access_token = %s WHERE id = %s", ["gAAAAABnot-a-fernet-token", orm.grant.pk])
    with pytest.raises(TokenUnavailable):
        connection_for_token(tenant_id=tenant.pk, connection_id=seller.public_id)
