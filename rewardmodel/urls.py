# Pages of the Reward models app; filled in by its issue. Included at its prefix in config/urls.py.
app_name = "rewardmodel"
urlpatterns: list = []
