from django.db import migrations, models


def imported_models_use_the_reference(apps, schema_editor):
    # An imported model is a released checkpoint or adapter: trained on the authors' prompts.
    apps.get_model("rewardmodel", "RewardModel").objects.filter(origin="imported").update(
        prompt_set="reference"
    )


class Migration(migrations.Migration):
    """Models EditLoop fine-tuned before prompt sets existed learned EditLoop's wording: they
    keep it. Imported ones (released checkpoints) and every new model use the authors' prompts."""

    dependencies = [("rewardmodel", "0001_registry")]

    operations = [
        migrations.AddField(
            model_name="rewardmodel",
            name="prompt_set",
            field=models.CharField(
                choices=[
                    ("reference", "reference (the authors' exact prompts)"),
                    ("editloop", "editloop (EditLoop's wording)"),
                ],
                default="editloop",
                help_text="the prompt set the model was trained with; scoring uses the same",
                max_length=20,
            ),
            preserve_default=False,
        ),
        migrations.RunPython(imported_models_use_the_reference, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="rewardmodel",
            name="prompt_set",
            field=models.CharField(
                choices=[
                    ("reference", "reference (the authors' exact prompts)"),
                    ("editloop", "editloop (EditLoop's wording)"),
                ],
                default="reference",
                help_text="the prompt set the model was trained with; scoring uses the same",
                max_length=20,
            ),
        ),
    ]
