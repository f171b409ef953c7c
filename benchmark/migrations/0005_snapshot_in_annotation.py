"""The Snapshot model moved to annotation (annotation 0003), keeping its table."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("benchmark", "0004_metric_help_text"),
        ("annotation", "0003_snapshot"),
        ("rewardmodel", "0003_snapshot_in_annotation"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="benchmarkdataset",
                    name="snapshot",
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to="annotation.snapshot"),
                ),
                migrations.DeleteModel(name="Snapshot"),
            ],
            database_operations=[],
        ),
    ]
