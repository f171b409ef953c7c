"""Request-body limits for the API: DRF's parsers read the stream directly, so
Django's DATA_UPLOAD_MAX_MEMORY_SIZE never applies to JSON bodies."""

from django.conf import settings
from rest_framework.exceptions import APIException
from rest_framework.parsers import JSONParser


class BodyTooLarge(APIException):
    status_code = 413
    default_detail = "request body too large"
    default_code = "body_too_large"


class LimitedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        except ValueError:
            length = limit + 1
        if length > limit:
            raise BodyTooLarge(f"request body is {length} bytes; the limit is {limit}")
        return super().parse(stream, media_type, parser_context)
