"""Settings → Inboxes (/desk/settings/inboxes/): the channels, their settings and secrets.

The form is generated from the inbox kind's adapter: a text input per `settings_help` key that
is not a secret (a JSON textarea when the stored value is a list or an object), a password input
per `secret_settings` name (write-only: the page says "set" / "not set", a blank input keeps the
stored secret, a value is never rendered back). Creating goes through do_create_inbox, editing
through do_update_inbox (channels_inbox/actions/inboxes.py). Generated secrets are shown once,
on the page answering the creating POST (no redirect, nothing kept in the session).

Telegram inboxes have "Connect webhook" (setWebhook) and "Check webhook" (getWebhookInfo)
buttons: the Bot API is called only on those POSTs, never on a GET.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from channels_inbox.adapters import adapter_kinds, get_adapter
from channels_inbox.adapters.base import ChannelAdapter, DeliveryError
from channels_inbox.models import Inbox
from helpdesk.models import Team
from helpdesk.views.settings_common import Errors, about, checked, clip, parse_id, settings_admin

AREA = "inboxes"
MAX_SETTING_CHARS = 20_000


def _kinds() -> list[dict[str, str]]:
    return [{"kind": k, "label": str(get_adapter(k).label)} for k in adapter_kinds()]


def _adapter_or_none(kind: str) -> ChannelAdapter | None:
    return get_adapter(kind) if kind in adapter_kinds() else None


def _plain_names(adapter: ChannelAdapter) -> list[str]:
    return [k for k in adapter.settings_help if k not in adapter.secret_settings]


def _webhook_url(inbox: Inbox) -> str:
    from channels_inbox.actions.inboxes import webhook_url

    return webhook_url(inbox) if inbox.adapter.accepts_webhooks else ""


def _where(inbox: Inbox) -> dict[str, str]:
    """Where the channel is connected: the provider's webhook URL, the form link, the embed."""
    where = {"webhook_url": _webhook_url(inbox), "form_url": "", "embed": ""}
    if inbox.kind == "web_form":
        try:
            where["form_url"] = reverse("help:new_request", args=[inbox.slug])
        except NoReverseMatch:
            where["form_url"] = f"/help/{inbox.slug}/new/"
    if inbox.kind == "chat":
        try:
            from channels_inbox.views.widget_demo import embed_snippet
        except ImportError:  # pragma: no cover - the chat widget ships with the app
            pass
        else:
            where["embed"] = embed_snippet(inbox)
    return where


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, indent=2, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fields(
    adapter: ChannelAdapter, stored: dict[str, Any], posted: dict[str, str] | None, json_names: set[str], errors: Errors
) -> list[dict[str, Any]]:
    rows = []
    for key in _plain_names(adapter):
        is_json = key in json_names or isinstance(stored.get(key), list | dict)
        rows.append(
            {
                "key": key,
                "help": adapter.settings_help.get(key, ""),
                "value": posted[key] if posted is not None and key in posted else _as_text(stored.get(key)),
                "json": is_json,
                "required": key in adapter.required_settings,
                "errors": errors.by_field.get(f"s-{key}", []),
            }
        )
    return rows


def _secret_rows(adapter: ChannelAdapter, inbox: Inbox | None, errors: Errors) -> list[dict[str, Any]]:
    return [
        {
            "key": key,
            "help": adapter.settings_help.get(key, ""),
            "is_set": bool(inbox and inbox.secret(key)),
            "required": key in adapter.required_secrets,
            "errors": errors.by_field.get(f"secret-{key}", []),
        }
        for key in adapter.secret_settings
    ]


def _placement(adapter: ChannelAdapter) -> list[tuple[str, Any]]:
    names = [(f"s-{k}", k) for k in _plain_names(adapter)] + [(f"secret-{k}", k) for k in adapter.secret_settings]
    names.sort(key=lambda pair: -len(pair[1]))  # "bot_username" before a shorter name it contains
    return [("name", lambda lower: lower.startswith("name:")), *((f, about(k)) for f, k in names)]


def _from_post(adapter: ChannelAdapter, post: QueryDict, errors: Errors) -> dict[str, Any]:
    """The posted form: name, team, active, plain settings (typed), secrets, the raw texts."""
    raw: dict[str, str] = {}
    values: dict[str, Any] = {}
    json_names = {k for k in _plain_names(adapter) if post.get(f"json-{k}") == "1"}
    for key in _plain_names(adapter):
        text = clip(post.get(f"s-{key}", ""), MAX_SETTING_CHARS)
        raw[key] = text
        if len(text) > MAX_SETTING_CHARS:
            errors.add(f"s-{key}", f"{key}: at most {MAX_SETTING_CHARS} characters.")
            continue
        if key in json_names:
            if not text.strip():
                values[key] = None
                continue
            try:
                values[key] = json.loads(text)
            except ValueError as exc:
                errors.add(f"s-{key}", f"{key}: not valid JSON ({exc.args[0] if exc.args else exc}).")
            continue
        values[key] = text.strip()
    secrets = {k: clip(post.get(f"secret-{k}", ""), MAX_SETTING_CHARS) for k in adapter.secret_settings}
    team: Team | None = None
    team_raw = clip(post.get("team", ""), 20).strip()
    if team_raw:
        team_id = parse_id(team_raw)
        team = Team.objects.filter(pk=team_id).first() if team_id is not None else None
        if team is None:
            errors.add("team", "Choose a team from the list (or no team).")
    return {
        "name": clip(post.get("name", ""), 200).strip(),
        "team": team,
        "team_id": team.pk if team else None,
        "is_active": checked(post, "is_active"),
        "values": values,
        "raw": raw,
        "json_names": json_names,
        "secrets": secrets,
    }


def _form_context(
    adapter: ChannelAdapter,
    inbox: Inbox | None,
    errors: Errors,
    posted: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    stored = inbox.settings if inbox else {}
    if posted is not None:
        name, team_id, is_active = posted["name"], posted["team_id"], posted["is_active"]
    elif inbox is not None:
        name, team_id, is_active = inbox.name, inbox.team_id, inbox.is_active
    else:
        name, team_id, is_active = "", None, True
    return {
        "area": AREA,
        "inbox": inbox,
        "kind": adapter.kind,
        "kind_label": adapter.label,
        "name": name,
        "team_id": team_id,
        "is_active": is_active,
        "teams": list(Team.objects.order_by("name").only("pk", "name")),
        "fields": _fields(
            adapter,
            stored,
            posted["raw"] if posted else None,
            posted["json_names"] if posted else set(),
            errors,
        ),
        "secret_fields": _secret_rows(adapter, inbox, errors),
        "where": _where(inbox) if inbox else None,
        "errors": errors.by_field,
        "error_count": errors.count(),
        **extra,
    }


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@settings_admin
def inbox_list(request: HttpRequest) -> HttpResponse:
    rows = [
        {"inbox": inbox, "label": inbox.adapter.label, "webhook_url": _webhook_url(inbox)}
        for inbox in Inbox.objects.select_related("team").order_by("name", "pk")
    ]
    return render(request, "desk/settings/inbox_list.html", {"area": AREA, "rows": rows, "kinds": _kinds()})


@require_http_methods(["GET", "POST"])
@settings_admin
def inbox_new(request: HttpRequest) -> HttpResponse:
    from channels_inbox.actions.inboxes import do_create_inbox, do_update_inbox, email_webhook_urls

    kind = clip(request.POST.get("kind") or request.GET.get("kind", ""), 40).strip()
    adapter = _adapter_or_none(kind)
    if adapter is None:
        if request.method == "POST":
            errors = Errors()
            errors.add("kind", f"Choose a kind of inbox (not {kind[:20]!r}).")
            context = {"area": AREA, "kinds": _kinds(), "errors": errors.by_field, "error_count": errors.count()}
            return render(request, "desk/settings/inbox_kind.html", context, status=400)
        return render(request, "desk/settings/inbox_kind.html", {"area": AREA, "kinds": _kinds(), "errors": {}})
    if request.method == "GET":
        return render(request, "desk/settings/inbox_form.html", _form_context(adapter, None, Errors()))
    errors = Errors()
    posted = _from_post(adapter, request.POST, errors)
    if not posted["name"]:
        errors.add("name", "Give the inbox a name.")
    elif len(posted["name"]) > 100:
        errors.add("name", "The name is at most 100 characters.")
    if not errors:
        values = {k: v for k, v in posted["values"].items() if v not in ("", None)}
        values.update({k: v for k, v in posted["secrets"].items() if v.strip()})
        try:
            inbox, secrets = do_create_inbox(
                kind=kind,
                name=posted["name"],
                values=values,
                team=posted["team"],
                actor=request.user,  # type: ignore[arg-type]
            )
        except ValueError as exc:
            errors.place([str(exc)], _placement(adapter))
        else:
            if not posted["is_active"]:
                do_update_inbox(
                    inbox,
                    name=inbox.name,
                    values={},
                    secrets={},
                    team=inbox.team,
                    is_active=False,
                    actor=request.user,  # type: ignore[arg-type]
                )
            generated = [(name, secrets[name]) for name in adapter.generated_secrets if secrets.get(name)]
            context = {
                "area": AREA,
                "inbox": inbox,
                "kind_label": adapter.label,
                "generated": generated,
                "where": _where(inbox),
                "email_urls": email_webhook_urls(inbox, with_credentials=True) if inbox.kind == "email" else {},
            }
            return _no_store(render(request, "desk/settings/inbox_created.html", context))
    return _no_store(
        render(request, "desk/settings/inbox_form.html", _form_context(adapter, None, errors, posted), status=400)
    )


def _inbox(inbox_id: int) -> Inbox:
    inbox = get_object_or_404(Inbox.objects.select_related("team"), pk=inbox_id)
    if _adapter_or_none(inbox.kind) is None:
        raise Http404("this inbox's kind is not installed")
    return inbox


@require_http_methods(["GET", "POST"])
@settings_admin
def inbox_edit(request: HttpRequest, inbox_id: int) -> HttpResponse:
    from channels_inbox.actions.inboxes import do_update_inbox

    inbox = _inbox(inbox_id)
    adapter = inbox.adapter
    if request.method == "GET":
        return render(request, "desk/settings/inbox_form.html", _form_context(adapter, inbox, Errors()))
    errors = Errors()
    posted = _from_post(adapter, request.POST, errors)
    if not posted["name"]:
        errors.add("name", "Give the inbox a name.")
    if not errors:
        # A blank input clears a stored setting; one never set stays unset (not stored as "").
        values = {
            k: ("" if v is None else v)
            for k, v in posted["values"].items()
            if v not in ("", None) or k in inbox.settings
        }
        try:
            do_update_inbox(
                inbox,
                name=posted["name"],
                values=values,
                secrets=posted["secrets"],
                team=posted["team"],
                is_active=posted["is_active"],
                actor=request.user,  # type: ignore[arg-type]
            )
        except ValueError as exc:
            errors.place([str(exc)], _placement(adapter))
        else:
            messages.success(request, f"Saved inbox “{inbox.name}”.")
            return HttpResponseRedirect(reverse("desk:settings_inbox", args=[inbox.pk]))
    inbox.refresh_from_db()
    return render(request, "desk/settings/inbox_form.html", _form_context(adapter, inbox, errors, posted), status=400)


@require_POST
@settings_admin
def inbox_telegram(request: HttpRequest, inbox_id: int) -> HttpResponse:
    """ "Connect webhook" (setWebhook) or "Check webhook" (getWebhookInfo) for a Telegram inbox."""
    from channels_inbox.actions.telegram import do_set_telegram_webhook, telegram_webhook_info

    inbox = _inbox(inbox_id)
    if inbox.kind != "telegram":
        raise Http404("not a Telegram inbox")
    action = request.POST.get("action", "")
    extra: dict[str, Any] = {}
    status = 200  # a refusal by Telegram is shown on the page (not a 5xx: nothing here failed)
    try:
        if action == "connect":
            extra["telegram_summary"] = do_set_telegram_webhook(inbox)
        elif action == "check":
            extra["telegram_info"] = telegram_webhook_info(inbox)
        else:
            extra["telegram_error"] = "Unknown action."
            status = 400
    except DeliveryError as exc:  # the token is redacted from these
        extra["telegram_error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - anything else may carry the Bot API URL (the token)
        extra["telegram_error"] = f"Telegram could not be reached ({exc.__class__.__name__})."
    context = _form_context(inbox.adapter, inbox, Errors(), **extra)
    return render(request, "desk/settings/inbox_form.html", context, status=status)
