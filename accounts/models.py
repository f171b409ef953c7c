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
