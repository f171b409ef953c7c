from django.core.management.base import BaseCommand, CommandError

from accounts.models import Role
from accounts.services import user_api_token, user_create_or_update


class Command(BaseCommand):
    help = "Create a user (or change an existing user's role/password)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--password", help="omit for a user who signs in by API token only")
        parser.add_argument("--token", action="store_true", help="print the user's API token")

    def handle(self, *args, username: str, role: str, password: str | None, token: bool, **opts):
        if not username.strip() or len(username) > 150:
            raise CommandError("username must be 1-150 characters")
        user, created = user_create_or_update(username=username, role=role, password=password)
        self.stdout.write(f"{'created' if created else 'updated'} {user.username} ({user.role})")
        if token:
            self.stdout.write(user_api_token(user=user))
