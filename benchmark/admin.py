from django.contrib import admin

from benchmark.models import Snapshot


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "dataset", "rows", "sha256", "created_at")
    list_filter = ("kind",)
    readonly_fields = [f.name for f in Snapshot._meta.fields]
