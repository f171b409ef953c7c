from django.contrib.auth.middleware import LoginRequiredMiddleware as _Base


class LoginRequiredMiddleware(_Base):
    """Django's login-by-default, with two changes:

    - the API is left to DRF, which authenticates by token or session and
      answers 401/403 in JSON instead of redirecting to the login page;
    - a public view (login, /healthz) is served without loading the user, so it
      works while the session store (the database) is down.
    """

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/") or not getattr(view_func, "login_required", True):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
