"""What debug pages and error reports may show of settings and the environment."""

from __future__ import annotations

import re

from django.views.debug import SafeExceptionReporterFilter

# scheme://user:password@host: the password (which may be empty before the @) is masked.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)


def mask_url_passwords(text: str) -> str:
    return _URL_PASSWORD.sub(r"\g<head>********@", text)


class MaskingReporterFilter(SafeExceptionReporterFilter):
    """Django's filter (settings named like KEY, TOKEN, PASS... are hidden) and, in every other
    setting and environment value, the password inside a URL: CELERY_BROKER_URL, DATABASE_URL
    and CACHE_URL carry theirs that way."""

    def cleanse_setting(self, key, value):
        value = super().cleanse_setting(key, value)
        return mask_url_passwords(value) if isinstance(value, str) else value

    def get_traceback_frame_variables(self, request, tb_frame):
        """A traceback's local variables too (a URL read from the settings into a local)."""
        return [
            (name, self.cleanse_setting(name, value) if isinstance(value, (str, dict, list, tuple))
             else value)
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]  # fmt: skip
