from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Annotation"

    def ready(self) -> None:
        from jobs.registry import JobKind, register

        register(
            JobKind(
                name="annotation.import",
                title="Import groups",
                handler="annotation.jobs.run_import",
                config="annotation.jobs.ImportConfig",
                created_through="an upload (POST /api/datasets/import/ or /annotate/import/)",
            )
        )
        register(
            JobKind(
                name="annotation.export_snapshot",
                title="Export consensus snapshot",
                handler="annotation.jobs.run_export",
                config="annotation.jobs.ExportConfig",
            )
        )
