from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from accounts import throttle


class ThrottledModelBackend(ModelBackend):
    """Django's password check, refused without checking while this username has had too
    many failures from this address (accounts/throttle.py). Here rather than in the login
    view so that whatever calls authenticate() with a request is covered."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:  # not a web sign-in (e.g. a shell): nothing to count against
            return super().authenticate(request, username, password, **kwargs)
        wait = throttle.reserve(request, username)  # counted before the check: atomic
        if wait:
            request.login_retry_after = wait  # the login views answer 429 with it
            raise PermissionDenied("too many failed sign-ins")  # stops authenticate() here
        user = super().authenticate(request, username, password, **kwargs)
        if user is not None:
            throttle.reset(request, username)
        return user
