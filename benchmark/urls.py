# Pages of the Benchmark app; filled in by its issue. Included at its prefix in config/urls.py.
app_name = "benchmark"
urlpatterns: list = []
