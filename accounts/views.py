import math

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_http_methods
from rest_framework.authtoken.models import Token

from accounts.services import user_api_token_regenerate, user_api_token_revoke


@method_decorator(login_not_required, name="dispatch")
class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def form_invalid(self, form):
        # Set by accounts.backends.ThrottledModelBackend when it refused to check the password.
        wait = getattr(self.request, "login_retry_after", 0)
        if not wait:
            return super().form_invalid(form)
        context = self.get_context_data(form=form, retry_after_minutes=math.ceil(wait / 60))
        response = self.render_to_response(context, status=429)
        response["Retry-After"] = str(wait)
        return response


class LogoutView(auth_views.LogoutView):
    pass


@require_http_methods(["GET", "POST"])
def api_token(request):
    """The signed-in user's API token: see, regenerate or revoke it. (Researchers revoke
    other users' tokens in the admin, or with `manage.py revoke_token`.)"""
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "regenerate":
            user_api_token_regenerate(user=request.user)
            messages.success(request, "New API token created; the old one no longer works.")
        elif action == "revoke":
            user_api_token_revoke(user=request.user)
            messages.success(request, "API token revoked.")
        else:
            return HttpResponseBadRequest("unknown action")
        return redirect("api-token")
    key = Token.objects.filter(user=request.user).values_list("key", flat=True).first()
    return render(request, "accounts/api_token.html", {"token": key})
