"""Failed sign-ins, counted per (username, client address) in the default cache.

The count is the same whether the username exists or not, so a refusal tells
nothing about the account. Read-then-write, not atomic: a burst of parallel
guesses may get a few past the limit, each still costing a password hash.
"""

import hashlib
import math
import time

from django.conf import settings
from django.core.cache import cache


def client_address(request) -> str:
    if settings.BEHIND_PROXY:
        # The proxy appends the address it saw; anything left of it came from the client.
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded.strip():
            return forwarded.rsplit(",", 1)[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


def _key(request, username: str | None) -> str:
    who = f"{(username or '').casefold()}\n{client_address(request)}"
    return "login-failures:" + hashlib.sha256(who.encode()).hexdigest()


def _recent(key: str, now: float) -> list[float]:
    since = now - settings.LOGIN_FAILURE_WINDOW_SECONDS
    return [t for t in cache.get(key, []) if t > since]


def retry_after(request, username: str | None) -> int:
    """Seconds until this username may be tried again from this address; 0: now."""
    now = time.time()
    failures = _recent(_key(request, username), now)
    if len(failures) < settings.LOGIN_FAILURE_LIMIT:
        return 0
    oldest_counted = failures[-settings.LOGIN_FAILURE_LIMIT]
    return max(1, math.ceil(oldest_counted + settings.LOGIN_FAILURE_WINDOW_SECONDS - now))


def record_failure(request, username: str | None) -> None:
    key, now = _key(request, username), time.time()
    failures = [*_recent(key, now), now][-settings.LOGIN_FAILURE_LIMIT :]
    cache.set(key, failures, settings.LOGIN_FAILURE_WINDOW_SECONDS)


def reset(request, username: str | None) -> None:
    cache.delete(_key(request, username))
