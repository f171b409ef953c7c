from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from annotation.models import Dataset


class Command(BaseCommand):
    help = "Add annotators to a dataset (or remove them) and list who annotates it."

    def add_arguments(self, parser):
        parser.add_argument("dataset")
        parser.add_argument("--add", nargs="*", default=[], metavar="USERNAME")
        parser.add_argument("--remove", nargs="*", default=[], metavar="USERNAME")

    def handle(self, *args, dataset, add, remove, **options):
        try:
            ds = Dataset.objects.get(name=dataset)
        except Dataset.DoesNotExist:
            raise CommandError(f"no dataset named {dataset!r}") from None
        users = {u.username: u for u in User.objects.filter(username__in=[*add, *remove])}
        unknown = sorted(set(add + remove) - set(users))
        if unknown:
            raise CommandError(f"unknown user(s): {', '.join(unknown)}; nothing changed")
        ds.annotators.add(*(users[n] for n in add))
        ds.annotators.remove(*(users[n] for n in remove))
        names = sorted(ds.annotators.values_list("username", flat=True))
        self.stdout.write(f"{ds.name}: {', '.join(names) or 'no annotators'}")
