from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    # CACHE_URL=db:// (the default) keeps the cache in a table: made here so that `migrate`
    # (the demo, compose.yaml) is all a deployment runs. A no-op for other caches.
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
