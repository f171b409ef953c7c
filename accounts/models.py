from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models


class Role(models.TextChoices):
    ANNOTATOR = "annotator", "Annotator"
    RESEARCHER = "researcher", "Researcher"


class EditLoopUserManager(UserManager):
    def create_superuser(self, username, email=None, password=None, **extra_fields):
        extra_fields.setdefault("role", Role.RESEARCHER)
        return super().create_superuser(username, email, password, **extra_fields)


class User(AbstractUser):
    """An EditLoop user. Annotators see annotation pages only; researchers see everything."""

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)

    objects = EditLoopUserManager()

    @property
    def is_researcher(self) -> bool:
        return self.role == Role.RESEARCHER

    def save(self, *args, **kwargs):
        # The role is the one source of truth for access; the admin reads is_staff.
        self.is_staff = self.is_superuser = self.role == Role.RESEARCHER
        super().save(*args, **kwargs)


class SignInAttempt(models.Model):
    """A password check counted against a (username, address) key (accounts/throttle.py): a
    row is written before the check, so parallel guesses count each other."""

    key = models.CharField(max_length=64, db_index=True, help_text="sha256 of username+address")
    at = models.FloatField(db_index=True, help_text="seconds since the epoch")

    def __str__(self) -> str:
        return f"sign-in attempt at {self.at}"
