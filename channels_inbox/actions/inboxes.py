"""Creating and configuring inboxes (channels)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from django.conf import settings
from django.db import transaction
from django.utils.text import slugify

from channels_inbox.adapters import get_adapter
from channels_inbox.models import Inbox
from helpdesk.models import Team, User


def webhook_url(inbox: Inbox) -> str:
    if inbox.kind == "email":
        # One URL per ESP (see email_webhook_urls); the generic door takes no email.
        return f"{settings.SITE_URL}/webhooks/email/<esp>/{inbox.uuid}/"
    return f"{settings.SITE_URL}/webhooks/{inbox.kind}/{inbox.uuid}/"


def email_webhook_urls(inbox: Inbox, *, with_credentials: bool = False) -> dict[str, str]:
    """The inbound URL to give each ESP; with credentials: `https://<slug>:<webhook_secret>@host/…`.

    The ESP sends the URL's credentials as HTTP basic auth, which the webhook checks. They
    are the inbox's secret, so they are shown only where secrets are (at creation, rotation).
    """
    from channels_inbox.email.esp import ESP_NAMES

    site = urlsplit(settings.SITE_URL)
    netloc = site.netloc
    if with_credentials:
        secret = inbox.secret("webhook_secret")
        netloc = f"{quote(inbox.slug, safe='')}:{quote(secret, safe='')}@{site.netloc}"
    paths = {esp: f"{site.path}/webhooks/email/{esp}/{inbox.uuid}/" for esp in ESP_NAMES}
    # Mailgun posts the raw MIME only to a URL ending in "mime" (the parsed form to the other).
    paths["mailgun"] += "mime"
    return {esp: urlunsplit((site.scheme, netloc, path, "", "")) for esp, path in paths.items()}


def do_create_inbox(
    *,
    kind: str,
    name: str,
    values: dict[str, Any] | None = None,
    slug: str = "",
    team: Team | None = None,
    actor: User | None = None,
) -> tuple[Inbox, dict[str, str]]:
    """Create an inbox; returns it with its generated secrets (the only time they are shown)."""
    adapter = get_adapter(kind)
    values = dict(values or {})
    secret_names = {*adapter.generated_secrets, *adapter.secret_settings}
    secret_values = {k: str(values.pop(k)) for k in list(values) if k in secret_names}
    missing = [name for name in adapter.required_secrets if not secret_values.get(name, "").strip()]
    if missing:
        raise ValueError(f"missing settings for {kind}: {', '.join(missing)}")
    clean = adapter.clean_settings(values)
    secrets = {**adapter.new_secrets(), **secret_values}
    with transaction.atomic():
        base = slugify(slug or name)[:90] or kind
        unique = base
        n = 2
        while Inbox.objects.filter(slug=unique).exists():
            unique = f"{base}-{n}"
            n += 1
        inbox = Inbox.objects.create(kind=kind, name=name, slug=unique, settings=clean, secrets=secrets, team=team)
    return inbox, secrets


def do_update_inbox_settings(inbox: Inbox, *, values: dict[str, Any], actor: User | None = None) -> Inbox:
    """Change settings; secret settings (passwords, API keys) go to the inbox's secrets."""
    values = dict(values)
    secret_values = {k: str(values.pop(k)) for k in list(values) if k in inbox.adapter.secret_settings}
    merged = inbox.adapter.clean_settings({**inbox.settings, **values})
    with transaction.atomic():
        locked = Inbox.objects.select_for_update().get(pk=inbox.pk)
        locked.settings = merged
        locked.secrets = {**locked.secrets, **secret_values}
        locked.save(update_fields=["settings", "secrets"])
    inbox.settings, inbox.secrets = locked.settings, locked.secrets
    return inbox


def do_rotate_inbox_secret(inbox: Inbox, *, name: str, actor: User | None = None) -> str:
    """A new secret; the previous one stays valid for verification until the next rotation."""
    if name not in inbox.adapter.generated_secrets:
        raise ValueError(f"{inbox.kind} inboxes have no generated secret {name!r}")
    new = inbox.adapter.new_secrets()[name]
    with transaction.atomic():
        locked = Inbox.objects.select_for_update().get(pk=inbox.pk)
        locked.secrets = {**locked.secrets, f"previous_{name}": locked.secrets.get(name, ""), name: new}
        locked.save(update_fields=["secrets"])
    inbox.secrets = locked.secrets
    return new


def do_update_inbox(
    inbox: Inbox,
    *,
    name: str,
    values: dict[str, Any],
    secrets: dict[str, str],
    team: Team | None,
    is_active: bool,
    actor: User | None = None,
) -> Inbox:
    """Change an inbox's name, team, active flag and settings (the settings screen's edit).

    `values` are the plain settings (merged over the stored ones, then adapter.clean_settings);
    `secrets` replace a stored secret only where a new non-blank value is given (the form never
    shows a secret, so blank means "keep"). Raises ValueError when the settings are not valid.
    """
    adapter = inbox.adapter
    name = name.strip()
    if not name:
        raise ValueError("name: give the inbox a name")
    if len(name) > 100:
        raise ValueError("name: at most 100 characters")
    allowed = set(adapter.secret_settings)
    unknown = sorted(set(secrets) - allowed)
    if unknown:
        raise ValueError(f"unknown secret settings for {inbox.kind}: {', '.join(unknown)}")
    given = {k: str(v) for k, v in secrets.items() if str(v).strip()}
    plain = {k: v for k, v in values.items() if k not in allowed}
    with transaction.atomic():
        locked = Inbox.objects.select_for_update().get(pk=inbox.pk)
        merged = adapter.clean_settings({**locked.settings, **plain})
        new_secrets = {**locked.secrets, **given}
        missing = [n for n in adapter.required_secrets if not str(new_secrets.get(n, "")).strip()]
        if missing:
            raise ValueError(f"missing settings for {inbox.kind}: {', '.join(missing)}")
        locked.name = name
        locked.settings = merged
        locked.secrets = new_secrets
        locked.team = team
        locked.is_active = is_active
        locked.save(update_fields=["name", "settings", "secrets", "team", "is_active"])
    inbox.name, inbox.settings, inbox.secrets = locked.name, locked.settings, locked.secrets
    inbox.team, inbox.is_active = locked.team, locked.is_active
    return inbox
