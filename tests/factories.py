import factory

from accounts.models import Role, User
from jobs.models import Job

PASSWORD = "correct horse battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    role = Role.ANNOTATOR
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    kind = "jobs.selftest"
    config = factory.LazyFunction(lambda: {"steps": 3, "step_seconds": 0.0, "fail_at_step": None})
