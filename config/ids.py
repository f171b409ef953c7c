"""Object ids from untrusted text (query strings, form fields, URL parts)."""

from __future__ import annotations


def parse_id(text: str | int | None) -> int | None:
    """The id ``text`` names, or None: only ASCII digits ("²".isdigit() is true, and int()
    refuses it) and at most 18 of them (a bigger number overflows the database's bigint). An
    int passes as itself when it is in that range."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text if 0 <= text < 10**18 else None
    if isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None
