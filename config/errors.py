"""One error hierarchy and one handler each for the API and the pages.

Every error a user causes and can fix is an :class:`EditLoopError` (or a subclass) carrying
its HTTP status and a short machine-readable code. Views raise them (or let services raise
them) and never map error types to statuses themselves: the API's exception handler answers
``{"detail": message, "code": code}`` with the status, and :class:`EditLoopErrorMiddleware` an
error page. Pages whose form shows the message in place catch ``EditLoopError`` and use its
``status``. The domain errors also derive from the built-in type callers used to catch
(ValueError, LookupError), so existing ``except ValueError`` keeps working."""

from __future__ import annotations

import sys

from django.shortcuts import render
from django.views.defaults import server_error as django_server_error
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.middleware import database_unavailable_response, is_database_unavailable


class EditLoopError(Exception):
    """A request EditLoop refuses, with what to do about it in the message."""

    status = 400
    code = "invalid"


class Invalid(EditLoopError, ValueError):
    """Bad input: a field, a config, a file (400)."""


class NotFound(EditLoopError, LookupError):
    status, code = 404, "not_found"


class Conflict(EditLoopError):
    """The request clashes with what is stored (409)."""

    status, code = 409, "conflict"


class TooLarge(Invalid):
    status, code = 413, "too_large"


class Unavailable(EditLoopError):
    """A service EditLoop needs is down (the broker): try again later (503)."""

    status, code = 503, "unavailable"


class NotStored(EditLoopError, OSError):
    """The server could not keep what it was sent (a full disk, an unwritable folder)."""

    status, code = 507, "not_stored"


# What a form shows in place: EditLoop's errors, and the ValueError an engine or a parser raises
# for input it was handed (a scorer spec, a number field). `except FORM_ERRORS as exc:` then
# `refusal_status(exc)`.
FORM_ERRORS = (EditLoopError, ValueError)


def refusal_status(exc: BaseException) -> int:
    return exc.status if isinstance(exc, EditLoopError) else Invalid.status


def api_exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: EditLoop's errors as {"detail", "code"}, DRF's own as DRF
    answers them, anything else a 500 (or a 503 for a database that is down)."""
    if isinstance(exc, EditLoopError):
        return Response({"detail": str(exc), "code": exc.code}, status=exc.status)
    return drf_exception_handler(exc, context)


class EditLoopErrorMiddleware:
    """Pages: an EditLoopError no view caught becomes an error page with its status."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, EditLoopError):
            context = {"message": str(exception), "status": exception.status}
            return render(request, "error.html", context, status=exception.status)
        return None


def server_error(request, *args, **kwargs):
    """handler500: an unreachable database is a 503 (retry later), not a 500."""
    exc = sys.exc_info()[1]
    if is_database_unavailable(exc):
        return database_unavailable_response(request, exc)
    return django_server_error(request, *args, **kwargs)
