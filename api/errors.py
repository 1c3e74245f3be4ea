"""One error shape for every answer that is not a success:
`{"error": {"code": "...", "message": "..."}}`, plus keys named per code (`field` for 400,
`reauthorization_url` for 409 `reauthorization_required`).

Endpoints raise `ApiError`; django-ninja's own exceptions (authentication, validation, an
unparseable body, 404) are turned into the same shape by `install_handlers`, and
`ApiErrorsMiddleware` does it for what Django answers before the API runs (an unknown path
under /api/, a method the path does not have).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja.errors import AuthenticationError, HttpError, ValidationError

logger = logging.getLogger(__name__)

API_PATH_PREFIX = "/api/"

class ApiError(Exception):
    """An answer with the error shape: `ApiError(404, "not_found", "No such connection.")`.

    `extra` keys go inside `error`; `headers` are set on the response.
    """

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any):
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = {k: v for k, v in extra.items() if v is not None}
        super().__init__(f"{status} {code}: {message}")


def error_response(status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> HttpResponse:
    body = {"error": {"code": code, "message": message, **{k: v for k, v in extra.items() if v is not None}}}
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def unauthorized(message: str = "Send a valid API key: Authorization: Bearer spc_…") -> HttpResponse:
    return error_response(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


# Field names (snake_case), header names (Idempotency-Key) and list indexes; pydantic's tags for
# validators and union members (`constrained-str`, `function-wrap[…]`, `literal['']`, `str`) are not.
_NAME_PART = re.compile(r"^[a-z_][a-z0-9_]*$|^[A-Z][A-Za-z0-9]*(?:-[A-Z][A-Za-z0-9]*)*$|^[0-9]+$")
_TYPE_TAGS = {"str", "int", "bool", "float", "none", "list", "dict"}


def _field_name(loc: list | tuple) -> str:
    """`["body", "payload", "min_ttl_seconds"]` → "min_ttl_seconds"; `["query", "limit"]` → "limit".

    pydantic's location also names validators and union members (`function-wrap[…]`,
    `literal[…]`): only the parts that are field names or list indexes are kept.
    """
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie", "form"):
        parts = parts[1:]
        if parts and parts[0] in ("payload", "filters"):
            parts = parts[1:]
    return ".".join(p for p in parts if _NAME_PART.match(p) and p not in _TYPE_TAGS) or "body"


def _validation_message(error: dict) -> str:
    if error.get("type") == "missing":
        return "This field is required."
    if error.get("type") == "extra_forbidden":
        return "Unknown field."
    message = str(error.get("msg") or "Invalid value.").removeprefix("Value error, ")
    return message[0].upper() + message[1:] + ("" if message.endswith(".") else ".")


def install_handlers(api) -> None:
    """Give the API's exceptions the error shape."""

    @api.exception_handler(ApiError)
    def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers, **exc.extra)

    @api.exception_handler(AuthenticationError)
    def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return unauthorized()

    @api.exception_handler(ValidationError)
    def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        first = exc.errors[0] if exc.errors else {}
        loc = list(first.get("loc") or [])
        if loc[:1] == ["path"]:
            # A connection id that is not a UUID names no connection: 404, like an unknown one.
            return error_response(404, "not_found", "No such connection.")
        field = _field_name(loc)
        return error_response(400, "invalid_request", f"{field}: {_validation_message(first)}", field=field)

    @api.exception_handler(Http404)
    def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return error_response(404, "not_found", "Not found.")

    @api.exception_handler(HttpError)
    def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        if exc.status_code == 400:
            # django-ninja's "Cannot parse request body": not JSON at all.
            return error_response(400, "invalid_request", "The request body is not valid JSON.", field="body")
        code = {403: "permission_denied", 404: "not_found", 429: "rate_limited"}.get(exc.status_code, "invalid_request")
        return error_response(exc.status_code, code, str(exc))

    @api.exception_handler(Exception)
    def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        # Logged with its traceback (the log filter scrubs anything token-shaped); the client gets
        # no detail of our internals.
        logger.exception("API error on %s %s", request.method, request.path_info)
        return error_response(500, "internal_error", "Something went wrong on our side; it is logged. Try again later.")


class ApiErrorsMiddleware:
    """Django's own 404 and 405 answers under /api/ (unknown path, wrong method) in the API's
    error shape rather than an HTML page or plain text."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code not in (404, 405) or not request.path_info.startswith(API_PATH_PREFIX):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        if response.status_code == 405:
            replaced = error_response(405, "method_not_allowed", f"{request.method} is not allowed here; see Allow.")
            if response.has_header("Allow"):
                replaced["Allow"] = response["Allow"]
            return replaced
        return error_response(404, "not_found", "No such API path; see /api/v1/docs.")

