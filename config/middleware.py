import logging

from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse

log = logging.getLogger(__name__)


def is_database_unavailable(exc: BaseException | None) -> bool:
    return isinstance(exc, (OperationalError, InterfaceError)) or (
        isinstance(exc, DatabaseError) and "connection" in str(exc).lower()
    )


def database_unavailable_response(request, exc) -> HttpResponse:
    log.warning("database unavailable for %s: %s", request.path, exc)
    if request.path_info.startswith("/api/") or request.path_info == "/healthz":
        response = JsonResponse({"detail": "database unavailable, try again shortly"}, status=503)
    else:
        response = HttpResponse("The database is unavailable; try again in a moment.", status=503)
    response["Retry-After"] = "5"
    return response


class DatabaseUnavailableMiddleware:
    """A database that is down or restarting answers 503 with Retry-After, not a
    500 with a traceback (DEBUG included); the connection is re-established on a
    later request. Views' exceptions arrive here; those raised while middleware
    loads the session or user go to config.errors.server_error."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if is_database_unavailable(exception):
            return database_unavailable_response(request, exception)
        return None
