"""Project-level pages: the home page gathers what the apps offer the signed-in user (the
project may import every app; the apps do not import each other for it)."""

from django.shortcuts import render

from annotation.selectors import datasets_with_progress


def home(request):
    return render(request, "home.html", {"datasets": datasets_with_progress(request.user)})
