"""Error pages are ours: plain words, the site's stylesheet, a way back, nothing internal."""

from __future__ import annotations

import pytest
from django.test import Client
from django.views.defaults import server_error

pytestmark = pytest.mark.django_db


def test_an_unknown_address_gets_the_404_page(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Page not found" in html and "/static/spconnect/site.css" in html and 'href="/"' in html


def test_a_form_sent_without_its_csrf_token_explains_what_to_do():
    client = Client(enforce_csrf_checks=True)
    response = client.post("/admin/login/", {"username": "x", "password": "y"})
    assert response.status_code == 403
    assert "reload the page" in response.content.decode()


def test_the_500_page_needs_no_database_or_request_context(rf, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = server_error(rf.get("/"))
    assert response.status_code == 500
    html = response.content.decode()
    assert "Something went wrong on our side" in html and "Traceback" not in html
