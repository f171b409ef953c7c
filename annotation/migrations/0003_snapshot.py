"""annotation.Snapshot takes over the table the benchmark app created (benchmark_snapshot):
a move of the model in Django's state only; the database is not touched."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0002_quality_control"),
        ("benchmark", "0004_metric_help_text"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Snapshot",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("name", models.CharField(max_length=200)),
                        ("kind", models.CharField(choices=[("benchmark", "EditReward-Bench pairs"), ("preferences", "chosen/rejected training pairs"), ("rankings", "groups with their rankings")], max_length=12)),
                        ("policy", models.JSONField(help_text='{"name": "unanimous"|"majority", "max_tie_fraction", ...}')),
                        ("path", models.CharField(help_text="folder on the shared volume", max_length=500)),
                        ("sha256", models.CharField(max_length=64)),
                        ("rows", models.PositiveIntegerField()),
                        ("counts", models.JSONField(default=dict, help_text="rows per dimension and task type")),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("created_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
                        ("dataset", models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="snapshots", to="annotation.dataset")),
                    ],
                    options={
                        "db_table": "benchmark_snapshot",
                        "ordering": ["-created_at"],
                        "constraints": [models.UniqueConstraint(fields=("kind", "name"), name="snapshot_unique_name")],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
