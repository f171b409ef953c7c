from django.contrib import admin

from annotation.models import (
    Adjudication,
    Assignment,
    Candidate,
    Dataset,
    Group,
    Ranking,
    RankingVersion,
    Snapshot,
)


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "overlap", "lease_ttl_seconds", "revision_window_seconds", "created_at")
    filter_horizontal = ("annotators",)


class CandidateInline(admin.TabularInline):
    model = Candidate
    extra = 0


@admin.register(Group)
class GroupAdmin(admin.ModelAdmin):
    list_display = ("external_id", "dataset", "task_type", "ranking_count", "is_gold", "review")
    list_filter = ("dataset", "task_type", "is_gold", "review")
    search_fields = ("external_id", "instruction")
    inlines = [CandidateInline]


class RankingVersionInline(admin.TabularInline):
    """The versions a revision replaced: an audit trail, read only."""

    model = RankingVersion
    extra = 0
    can_delete = False
    readonly_fields = ("version", "submission_id", "tiers", "unusable", "seconds_spent",
                       "submitted_at", "replaced_at")  # fmt: skip
    exclude = ("code",)

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Ranking)
class RankingAdmin(admin.ModelAdmin):
    inlines = [RankingVersionInline]
    list_display = (
        "id",
        "group",
        "annotator",
        "version",
        "surplus",
        "lease_expired",
        "seconds_spent",
        "created_at",
    )
    list_filter = ("surplus", "repeat", "group__dataset")
    # Human work, and the statistics read `code`, which must match the tiers.
    readonly_fields = (
        "group", "annotator", "submission_id", "tiers", "unusable", "code", "shown_order",
        "repeat", "surplus", "lease_expired", "seconds_spent", "version", "revised_at",
    )  # fmt: skip

    def has_delete_permission(self, request, obj=None) -> bool:
        # Rankings are human work, and group counters and leases depend on them.
        return False


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("group", "annotator", "status", "expires_at")
    list_filter = ("status",)


@admin.register(Adjudication)
class AdjudicationAdmin(admin.ModelAdmin):
    list_display = ("group", "researcher", "updated_at")
    readonly_fields = ("group", "researcher", "created_at", "updated_at")


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "dataset", "rows", "sha256", "created_at")
    list_filter = ("kind",)
    readonly_fields = [f.name for f in Snapshot._meta.fields]
