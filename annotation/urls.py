# Pages of the Annotation app; filled in by its issue. Included at its prefix in config/urls.py.
app_name = "annotation"
urlpatterns: list = []
