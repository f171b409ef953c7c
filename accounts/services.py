from django.db import transaction
from rest_framework.authtoken.models import Token

from accounts.models import Role, User


@transaction.atomic
def user_create_or_update(
    *, username: str, role: str, password: str | None = None
) -> tuple[User, bool]:
    """Create the user, or update the role (and password when given) of an existing one."""
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(Role.values)}")
    user, created = User.objects.get_or_create(username=username, defaults={"role": role})
    user.role = role
    if password is not None:
        user.set_password(password)
    elif created:
        user.set_unusable_password()
    user.save()
    return user, created


def user_api_token(*, user: User) -> str:
    token, _ = Token.objects.get_or_create(user=user)
    return token.key


@transaction.atomic
def user_api_token_regenerate(*, user: User) -> str:
    """A new token; the old one stops working at once (DRF looks tokens up per request)."""
    Token.objects.filter(user=user).delete()
    return Token.objects.create(user=user).key


def user_api_token_revoke(*, user: User) -> bool:
    """Delete the user's token; False if there was none."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return bool(deleted)
