"""Invitations: a one-time link with which a new person chooses their password (the people
pages that hand them out are annotation/people_views.py)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.tokens import default_token_generator
from django.urls import reverse, reverse_lazy
from django.utils.decorators import method_decorator
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode


def invitation_link(request, user) -> str:
    """A link that lets `user` choose their password once: Django's password-reset token, which
    stops working when the password is set (and after PASSWORD_RESET_TIMEOUT, 3 days)."""
    path = reverse("invite", args=[urlsafe_base64_encode(force_bytes(user.pk)),
                                   default_token_generator.make_token(user)])  # fmt: skip
    return request.build_absolute_uri(path)


@method_decorator(login_not_required, name="dispatch")
class InviteView(auth_views.PasswordResetConfirmView):
    """The invitation link: the invitee chooses a password (once), then signs in."""

    template_name = "accounts/invite.html"
    success_url = reverse_lazy("login")
    post_reset_login = False

    def form_valid(self, form):
        messages.success(self.request, "Password set: sign in.")
        return super().form_valid(form)
