"""Sign-in with either the username or the email address."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest


class EmailOrUsernameBackend(ModelBackend):
    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        if username and "@" in username:
            user = get_user_model().objects.filter(email__iexact=username.strip()).first()
            if user is None:
                # Run the hasher anyway so timing does not reveal which addresses exist.
                get_user_model()().set_password(password)
                return None
            username = user.get_username()
        return super().authenticate(request, username=username, password=password, **kwargs)
