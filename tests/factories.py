from functools import cache

import factory
from django.contrib.auth.hashers import make_password

from accounts.models import Role, User
from jobs.models import Job

PASSWORD = "correct horse battery"


@cache
def password_hash() -> str:
    """One real (PBKDF2) hash for every test user: hashing per user costs ~0.3 s."""
    return make_password(PASSWORD)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"user{n}")
    role = Role.ANNOTATOR
    password = factory.LazyFunction(password_hash)


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    kind = "jobs.selftest"
    config = factory.LazyFunction(lambda: {"steps": 3, "step_seconds": 0.0, "fail_at_step": None})
