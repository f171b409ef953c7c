from django.contrib import admin

from annotation.models import Assignment, Candidate, Dataset, Group, Ranking


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "overlap", "lease_ttl_seconds", "created_at")
    filter_horizontal = ("annotators",)


class CandidateInline(admin.TabularInline):
    model = Candidate
    extra = 0


@admin.register(Group)
class GroupAdmin(admin.ModelAdmin):
    list_display = ("external_id", "dataset", "task_type", "ranking_count")
    list_filter = ("dataset", "task_type")
    search_fields = ("external_id", "instruction")
    inlines = [CandidateInline]


@admin.register(Ranking)
class RankingAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "group",
        "annotator",
        "surplus",
        "lease_expired",
        "seconds_spent",
        "created_at",
    )
    list_filter = ("surplus", "group__dataset")

    def has_delete_permission(self, request, obj=None) -> bool:
        # Rankings are human work, and group counters and leases depend on them.
        return False


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("group", "annotator", "status", "expires_at")
    list_filter = ("status",)
