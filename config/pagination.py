"""API pagination with bounds: `?limit=` at most MAX_LIMIT and `?offset=` at most MAX_OFFSET (a
20-digit limit overflowed the database's integer and answered 500)."""

from rest_framework.pagination import LimitOffsetPagination

MAX_LIMIT = 500
MAX_OFFSET = 10**12


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    max_limit = MAX_LIMIT

    def get_offset(self, request) -> int:
        return min(super().get_offset(request), MAX_OFFSET)
