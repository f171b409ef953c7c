import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("rewardmodel", "0002_rewardmodel_prompt_set"),
        ("annotation", "0003_snapshot"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="rewardmodel",
                    name="snapshot",
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to="annotation.snapshot"),
                ),
            ],
            database_operations=[],
        ),
    ]
