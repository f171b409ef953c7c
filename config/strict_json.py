"""Reading JSON from outside strictly, in one place (the API's parser, JSONL uploads): UTF-8,
no NaN or Infinity, at most MAX_DEPTH levels of objects and lists (a 100,000-deep body would
otherwise exhaust the recursion limit: a 500), and no NUL or lone surrogate in a string or key
(what PostgreSQL cannot store: it would fail the first query that used it)."""

from __future__ import annotations

import json
import re

MAX_DEPTH = 32

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class _Refused(ValueError):
    pass


def _no_constant(name: str):
    raise _Refused(f"{name} is not a JSON number")


def loads(raw: bytes | str) -> object:
    """The value, or ValueError with the reason (never the text itself)."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not valid UTF-8 (byte {exc.start + 1})") from None
    try:
        obj = json.loads(raw, parse_constant=_no_constant)
    except _Refused:
        raise
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError(f"JSON nested too deeply (the limit is {MAX_DEPTH} levels)") from None
    except ValueError:  # int() of a number with more than sys.get_int_max_str_digits()
        raise ValueError("invalid JSON (a number with too many digits)") from None
    check_values(obj)
    return obj


def check_values(obj: object) -> None:
    """ValueError when `obj` nests deeper than MAX_DEPTH or holds an unstorable string."""
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise ValueError(f"JSON nested too deeply (the limit is {MAX_DEPTH} levels)")
            if isinstance(value, dict):
                stack += [(key, depth) for key in value]
                value = value.values()
            stack += [(item, depth + 1) for item in value]
        elif isinstance(value, str) and (found := _UNSTORABLE.search(value)):
            bad = found.group()
            what = "a NUL character" if bad == "\x00" else "a lone UTF-16 surrogate"
            raise ValueError(f"a string holds {what} (\\u{ord(bad):04x})")
