"""The API's JSON parser: a size limit (DRF's parsers read the stream directly, so Django's
DATA_UPLOAD_MAX_MEMORY_SIZE never applies to JSON bodies) and strict reading
(config.strict_json: no NaN, at most 32 levels, no NUL or lone surrogate), so a hostile body is
a 400 with the reason instead of a 500 wherever it would have failed."""

from django.conf import settings
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser

from config import strict_json


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
        try:
            return strict_json.loads(stream.read(limit + 1) if stream is not None else b"")
        except ValueError as exc:
            raise ParseError(f"JSON parse error: {exc}") from None
