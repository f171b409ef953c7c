"""A dataset's settings page for researchers: how annotators are served and checked (lease
time, gold and repeat rates, adjudication) and how long they may revise a ranking. Dimension
keys and the overlap are fixed after the import (rankings are written against them)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.validators import MaxValueValidator, MinValueValidator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from accounts.permissions import researcher_required
from annotation.models import Dataset

DAY = 86400


class DatasetSettingsForm(forms.ModelForm):
    # The window in hours: what a researcher thinks in; stored in seconds.
    revision_window_hours = forms.FloatField(
        min_value=0, max_value=365 * 24, label="Revision window (hours)",
        help_text="how long after first submitting it an annotator may revise a ranking; "
        "0: never. An adjudicated group's rankings are final anyway.",
    )  # fmt: skip

    class Meta:
        model = Dataset
        fields = ["lease_ttl_seconds", "gold_rate", "repeat_rate", "repeat_gap",
                  "adjudication_threshold", "adjudication_extra_overlap"]  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["revision_window_hours"].initial = self.instance.revision_window_seconds / 3600
        bounds = {  # field: (min, max), the documented limits
            "lease_ttl_seconds": (30, DAY),
            "gold_rate": (0, 1),
            "repeat_rate": (0, 1),
            "repeat_gap": (1, 1000),
            "adjudication_threshold": (0, 1),
            "adjudication_extra_overlap": (0, 10),
        }
        for name, (low, high) in bounds.items():
            field = self.fields[name]
            field.min_value, field.max_value = low, high
            field.validators += [
                MinValueValidator(low), MaxValueValidator(high),
            ]  # fmt: skip
            field.widget.attrs.update(min=low, max=high)
            if isinstance(field, forms.FloatField):
                field.widget.attrs["step"] = "any"

    def save(self, commit: bool = True) -> Dataset:
        hours = self.cleaned_data["revision_window_hours"]
        self.instance.revision_window_seconds = round(hours * 3600)
        return super().save(commit)


@require_http_methods(["GET", "POST"])
@researcher_required
def dataset_settings(request, dataset_id: int):
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    form = DatasetSettingsForm(request.POST or None, instance=dataset)
    if request.method == "POST":
        if form.is_valid():
            form.save()
            messages.success(request, f"Settings of {dataset.name} saved.")
            return redirect("annotate-settings", dataset_id=dataset.pk)
        return render(request, "annotation/settings.html", {"dataset": dataset, "form": form},
                      status=400)  # fmt: skip
    return render(request, "annotation/settings.html", {"dataset": dataset, "form": form})
