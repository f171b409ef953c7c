import sys

from django.views.defaults import server_error as django_server_error

from config.middleware import database_unavailable_response, is_database_unavailable


def server_error(request, *args, **kwargs):
    """handler500: an unreachable database is a 503 (retry later), not a 500."""
    exc = sys.exc_info()[1]
    if is_database_unavailable(exc):
        return database_unavailable_response(request, exc)
    return django_server_error(request, *args, **kwargs)
