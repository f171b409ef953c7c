# Pages of the RL training app; filled in by its issue. Included at its prefix in config/urls.py.
app_name = "rltraining"
urlpatterns: list = []
