"""The chat widget's HTTP API and pages, under /widget/v1/ (docs/chat.md)."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
