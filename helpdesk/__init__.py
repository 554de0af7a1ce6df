"""Switchboard project configuration and the ticketing core."""

from helpdesk.celery import app as celery_app

__all__ = ["celery_app"]
