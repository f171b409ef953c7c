"""Failed sign-ins, counted per (username, client address) in the database.

Each password check is first written as an attempt, then the attempts in the window are
counted: the k-th attempt to be committed sees at least k, so however many guesses arrive at
once, at most LOGIN_FAILURE_LIMIT of them reach the password hash per window. A refused
attempt removes its row (it was not checked); a failed one stays as the failure; a success
clears the key. The count is the same whether the username exists or not, so a refusal tells
nothing about the account.
"""

import hashlib
import math
import time

from django.conf import settings

from accounts.models import SignInAttempt


def client_address(request) -> str:
    if settings.BEHIND_PROXY:
        # The proxy appends the address it saw; anything left of it came from the client.
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded.strip():
            return forwarded.rsplit(",", 1)[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


def _key(request, username: str | None) -> str:
    who = f"{(username or '').casefold()}\n{client_address(request)}"
    return hashlib.sha256(who.encode()).hexdigest()


def reserve(request, username: str | None) -> int:
    """Count a password check for this username from this address: 0 when it may go ahead
    (its row stays: a failure unless `reset`), else the seconds until one may."""
    key, now = _key(request, username), time.time()
    window, limit = settings.LOGIN_FAILURE_WINDOW_SECONDS, settings.LOGIN_FAILURE_LIMIT
    since = now - window
    SignInAttempt.objects.filter(at__lte=since).delete()  # every key's: the table stays small
    attempt = SignInAttempt.objects.create(key=key, at=now)
    counted = SignInAttempt.objects.filter(key=key, at__gt=since)
    if counted.count() <= limit:
        return 0
    attempt.delete()
    times = sorted(counted.values_list("at", flat=True))
    if len(times) < limit:  # others were refused at the same instant and took theirs back
        return 1
    return max(1, math.ceil(times[-limit] + window - now))


def reset(request, username: str | None) -> None:
    SignInAttempt.objects.filter(key=_key(request, username)).delete()
