"""A Content-Security-Policy on every response: scripts, styles, images and connections from
this site only, no inline script or style, no framing, no plugins. The pages keep to it: their
scripts are files, data travels in JSON script elements (which do not run), and values a style
needs are set by static/css-vars.js from data attributes. The browser tests fail on any
violation."""

from __future__ import annotations

from django.conf import settings

POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])  # fmt: skip


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        # Django's own debug pages (DEBUG on) are inline HTML: left readable.
        if not (settings.DEBUG and response.status_code >= 400):
            response.setdefault("Content-Security-Policy", POLICY)
        return response
