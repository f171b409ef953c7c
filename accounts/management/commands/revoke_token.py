from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from accounts.services import user_api_token_regenerate, user_api_token_revoke


class Command(BaseCommand):
    help = "Revoke a user's API token (it gets 401 at once), or replace it with --regenerate."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--regenerate", action="store_true", help="print a new token in its place"
        )

    def handle(self, *args, username: str, regenerate: bool, **opts):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        if regenerate:
            self.stdout.write(user_api_token_regenerate(user=user))
        elif user_api_token_revoke(user=user):
            self.stdout.write(f"revoked the API token of {username}")
        else:
            self.stdout.write(f"{username} had no API token")
