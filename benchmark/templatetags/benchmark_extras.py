from django import template

register = template.Library()


@register.filter
def dictget(mapping, key):
    """{{ d|dictget:k }}: d[k], or None when d is not a mapping or lacks k."""
    return mapping.get(key) if isinstance(mapping, dict) else None
