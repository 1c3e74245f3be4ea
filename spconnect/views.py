"""The project's own pages (the apps' pages live in their apps)."""

from __future__ import annotations

from functools import wraps

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET


def method_not_allowed_page(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Django's 405 (`require_GET`, `require_POST`) is an empty page: give it one that says what
    happened, keeping its Allow header. Any other response is returned as it is."""
    if response.status_code != 405 or response.content:
        return response
    page = render(request, "405.html", status=405)
    page["Allow"] = response["Allow"]
    return page


def with_method_not_allowed_page(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        return method_not_allowed_page(request, view(request, *args, **kwargs))

    return wrapper


@with_method_not_allowed_page
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")
