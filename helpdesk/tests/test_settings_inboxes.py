"""Settings → Inboxes (/desk/settings/inboxes/, helpdesk/views/settings_inboxes.py): who may open
it, the list and its query count, creating an inbox from its adapter's form (generated secrets
shown once, secrets never rendered back), editing (blank secrets kept), validation messages,
the Telegram webhook buttons (the Bot API faked with respx) and CSRF."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
import respx
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from channels_inbox.actions.inboxes import do_create_inbox, do_update_inbox
from channels_inbox.models import Inbox
from helpdesk.models import Team
from helpdesk.tests.conftest import logged_in

pytestmark = pytest.mark.django_db

TOKEN = "123456789:AAH-secret-bot-token_xyz"
NEW = "/desk/settings/inboxes/new/"
LIST = "/desk/settings/inboxes/"


@pytest.fixture
def admin(admin_agent: Any) -> Client:
    return logged_in(admin_agent)


@pytest.fixture(autouse=True)
def _https_site(settings: Any) -> None:
    settings.SITE_URL = "https://desk.example.com"
    settings.TELEGRAM_API_BASE = "https://tg.example.test"


def text(resp: Any) -> str:
    return str(resp.content.decode())


def field_errors(resp: Any) -> list[str]:
    found = re.findall(r'<p class="field-error"[^>]*>(.*?)</p>', text(resp), re.S)
    return [f.replace("&#x27;", "'").replace("&quot;", '"').replace("&amp;", "&") for f in found]


def telegram_inbox(name: str = "Bot") -> Inbox:
    inbox, _ = do_create_inbox(kind="telegram", name=name, values={"bot_token": TOKEN, "bot_username": "shop_bot"})
    return inbox


def create_telegram(client: Client, **extra: str) -> Any:
    data = {"kind": "telegram", "name": "Shop bot", "s-bot_username": "@shop_bot", "secret-bot_token": TOKEN}
    data |= {"is_active": "on"}
    data |= extra
    return client.post(NEW, data)


# --- permissions --------------------------------------------------------------------------------
@pytest.mark.parametrize("url", [LIST, NEW, f"{NEW}?kind=telegram"])
def test_non_admin_gets_403(agent: Any, url: str) -> None:
    client = logged_in(agent)
    assert client.get(url).status_code == 403
    assert client.post(NEW, {"kind": "telegram", "name": "x", "secret-bot_token": TOKEN}).status_code == 403
    assert not Inbox.objects.exists()


def test_non_admin_cannot_open_or_edit_an_inbox(agent: Any) -> None:
    inbox = telegram_inbox()
    client = logged_in(agent)
    assert client.get(f"{LIST}{inbox.pk}/").status_code == 403
    assert client.post(f"{LIST}{inbox.pk}/", {"name": "Hacked"}).status_code == 403
    assert client.post(f"{LIST}{inbox.pk}/telegram/", {"action": "connect"}).status_code == 403
    inbox.refresh_from_db()
    assert inbox.name == "Bot"


def test_anonymous_is_sent_to_login(db: Any) -> None:
    resp = Client().get(LIST)
    assert resp.status_code == 302
    assert "/desk/login/" in resp["Location"]


def test_index_links_to_inboxes_for_admins_only(admin: Client, agent: Any) -> None:
    assert 'href="/desk/settings/inboxes/"' in text(admin.get("/desk/settings/"))
    assert 'href="/desk/settings/inboxes/"' not in text(logged_in(agent).get("/desk/settings/"))


# --- list -----------------------------------------------------------------------------------------
def test_list_shows_every_inbox_with_kind_and_webhook_url(admin: Client) -> None:
    bot = telegram_inbox("Telegram bot")
    form, _ = do_create_inbox(kind="chat", name="Contact form")
    resp = admin.get(LIST)
    assert resp.status_code == 200
    body = text(resp)
    assert "Telegram bot" in body
    assert "Contact form" in body
    assert f"https://desk.example.com/webhooks/telegram/{bot.uuid}/" in body
    assert f"/webhooks/chat/{form.uuid}/" not in body  # chat takes no webhook
    assert "<td>Telegram</td>" in body
    assert 'value="telegram"' in body  # the kind chooser
    assert TOKEN not in body


def test_list_query_count_does_not_grow_with_inboxes(admin: Client) -> None:
    team = Team.objects.create(name="Support")
    _first, _ = do_create_inbox(kind="chat", name="Form 0", team=team)
    admin.get(LIST)  # warm up (session, caches)
    with CaptureQueriesContext(connection) as one:
        assert admin.get(LIST).status_code == 200
    for i in range(1, 5):
        do_create_inbox(kind="chat", name=f"Form {i}", team=team)
        telegram_inbox(f"Bot {i}")
    with CaptureQueriesContext(connection) as many:
        resp = admin.get(LIST)
    assert resp.status_code == 200
    assert text(resp).count('id="inbox-') == 9
    assert len(many) == len(one), [q["sql"] for q in many.captured_queries]


# --- create ---------------------------------------------------------------------------------------
def test_new_without_kind_offers_the_kinds(admin: Client) -> None:
    resp = admin.get(NEW)
    assert resp.status_code == 200
    assert 'value="telegram"' in text(resp)
    assert 'value="web_form"' in text(resp)
    bad = admin.post(NEW, {"kind": "nope", "name": "x"})
    assert bad.status_code == 400
    assert "Choose a kind of inbox" in text(bad)


def test_new_form_is_generated_from_the_adapter(admin: Client) -> None:
    resp = admin.get(f"{NEW}?kind=telegram")
    assert resp.status_code == 200
    body = text(resp)
    assert 'name="s-bot_username"' in body
    assert "the bot&#x27;s @username" in body  # help text
    assert re.search(r'<input type="password" id="f-secret-bot_token" name="secret-bot_token" value=""', body)
    assert 'name="s-bot_token"' not in body  # a secret is never a text input
    assert "not set" in body


def test_create_telegram_inbox_shows_generated_secret_once(admin: Client) -> None:
    team = Team.objects.create(name="Bots")
    resp = create_telegram(admin, team=str(team.pk))
    assert resp.status_code == 200
    inbox = Inbox.objects.get()
    assert inbox.kind == "telegram"
    assert inbox.name == "Shop bot"
    assert inbox.team == team
    assert inbox.is_active
    assert inbox.secrets["bot_token"] == TOKEN
    assert inbox.settings == {"bot_username": "shop_bot"}
    generated = inbox.secrets["webhook_secret"]
    assert generated
    body = text(resp)
    assert generated in body
    assert "Copy it now: it is not shown again" in body
    assert f"https://desk.example.com/webhooks/telegram/{inbox.uuid}/" in body
    assert "The URL to paste in the provider's console" in body
    assert resp["Cache-Control"] == "no-store"
    assert TOKEN not in body
    # then: never again, on any page
    for url in (LIST, f"{LIST}{inbox.pk}/"):
        page = text(admin.get(url))
        assert generated not in page
        assert TOKEN not in page


def test_create_inactive(admin: Client) -> None:
    data = {"kind": "chat", "name": "Quiet chat"}
    resp = admin.post(NEW, data)
    assert resp.status_code == 200
    inbox = Inbox.objects.get()
    assert inbox.is_active is False
    assert f'data-inbox="{inbox.public_token}"' in text(resp).replace("&quot;", '"')
    assert "/webhooks/chat/" not in text(resp)


def test_web_form_page_links_to_its_form(admin: Client) -> None:
    email, _ = do_create_inbox(kind="email", name="Support mail", values={"address": "support@example.com"})
    form, _ = do_create_inbox(kind="web_form", name="Contact", values={"reply_email_inbox": email.slug})
    body = text(admin.get(f"{LIST}{form.pk}/"))
    assert f'href="/help/{form.slug}/new/"' in body


def test_missing_required_secret_is_400_with_the_message(admin: Client) -> None:
    resp = create_telegram(admin, **{"secret-bot_token": ""})
    assert resp.status_code == 400
    assert "missing settings for telegram: bot_token" in field_errors(resp)
    assert "One thing needs fixing; nothing was saved." in text(resp)
    assert 'value="@shop_bot"' in text(resp)  # the input is kept
    assert not Inbox.objects.exists()


def test_invalid_setting_is_shown_next_to_it(admin: Client) -> None:
    resp = create_telegram(admin, **{"s-bot_username": "bad name!"})
    assert resp.status_code == 400
    assert "bot_username: letters, digits and _ only" in field_errors(resp)
    assert 'id="s-bot_username-error"' in text(resp)
    assert TOKEN not in text(resp)  # the posted secret is not rendered back
    assert not Inbox.objects.exists()


def test_missing_name(admin: Client) -> None:
    resp = create_telegram(admin, name="  ")
    assert resp.status_code == 400
    assert "Give the inbox a name." in field_errors(resp)
    assert not Inbox.objects.exists()


# --- edit -----------------------------------------------------------------------------------------
def edit(client: Client, inbox: Inbox, **fields: str) -> Any:
    data = {"name": inbox.name, "s-bot_username": "shop_bot", "secret-bot_token": "", "is_active": "on"} | fields
    return client.post(f"{LIST}{inbox.pk}/", data)


def test_edit_page_shows_set_and_never_the_secret(admin: Client) -> None:
    inbox = telegram_inbox()
    body = text(admin.get(f"{LIST}{inbox.pk}/"))
    assert "bot_token (required) — set" in body
    assert TOKEN not in body
    assert inbox.secret("webhook_secret") not in body
    assert 'name="s-bot_username" value="shop_bot"' in body
    assert "Connect webhook" in body
    assert "Check webhook" in body
    assert "See docs/channels.md" in body


def test_edit_keeps_secret_when_blank_and_replaces_when_given(admin: Client) -> None:
    inbox = telegram_inbox()
    webhook_secret = inbox.secret("webhook_secret")
    resp = edit(admin, inbox, name="Renamed", **{"s-bot_username": "other_bot"})
    assert resp.status_code == 302
    inbox.refresh_from_db()
    assert inbox.name == "Renamed"
    assert inbox.settings == {"bot_username": "other_bot"}
    assert inbox.secrets == {"bot_token": TOKEN, "webhook_secret": webhook_secret}
    resp = edit(admin, inbox, name="Renamed", **{"secret-bot_token": "999:new-token"})
    assert resp.status_code == 302
    inbox.refresh_from_db()
    assert inbox.secrets == {"bot_token": "999:new-token", "webhook_secret": webhook_secret}
    assert "999:new-token" not in text(admin.get(f"{LIST}{inbox.pk}/"))


def test_edit_invalid_setting_shows_error_and_changes_nothing(admin: Client) -> None:
    inbox = telegram_inbox()
    resp = edit(admin, inbox, name="Changed", **{"s-bot_username": "no spaces allowed"})
    assert resp.status_code == 400
    assert "bot_username: letters, digits and _ only" in field_errors(resp)
    inbox.refresh_from_db()
    assert inbox.name == "Bot"
    assert inbox.settings == {"bot_username": "shop_bot"}


def test_deactivate_and_team(admin: Client) -> None:
    inbox = telegram_inbox()
    team = Team.objects.create(name="Bots")
    resp = admin.post(f"{LIST}{inbox.pk}/", {"name": "Bot", "s-bot_username": "shop_bot", "team": str(team.pk)})
    assert resp.status_code == 302
    inbox.refresh_from_db()
    assert inbox.is_active is False
    assert inbox.team == team
    assert "Inactive" in text(admin.get(LIST))
    for hostile in ("999999", "²", "99999999999999999999", "1; drop"):
        bad = admin.post(f"{LIST}{inbox.pk}/", {"name": "Bot", "team": hostile})
        assert bad.status_code == 400
        assert "Choose a team from the list (or no team)." in field_errors(bad)
    inbox.refresh_from_db()
    assert inbox.team == team


def test_json_setting_textarea_and_bad_json(admin: Client) -> None:
    inbox, _ = do_create_inbox(kind="api", name="Shop API", values={"callback_url": "http://127.0.0.1:9/hook"})
    # a stored list/dict value is edited as JSON
    inbox.settings = {**inbox.settings, "callback_url": {"url": "x"}}
    inbox.save(update_fields=["settings"])
    page = text(admin.get(f"{LIST}{inbox.pk}/"))
    assert 'name="json-callback_url" value="1"' in page
    assert "<textarea" in page
    resp = admin.post(
        f"{LIST}{inbox.pk}/", {"name": "Shop API", "json-callback_url": "1", "s-callback_url": "{not json"}
    )
    assert resp.status_code == 400
    errors = field_errors(resp)
    assert len(errors) == 1
    assert errors[0].startswith("callback_url: not valid JSON")
    inbox.refresh_from_db()
    assert inbox.settings["callback_url"] == {"url": "x"}


def test_do_update_inbox_refuses_unknown_secret(db: Any) -> None:
    inbox = telegram_inbox()
    with pytest.raises(ValueError, match="unknown secret settings"):
        do_update_inbox(inbox, name="Bot", values={}, secrets={"nope": "x"}, team=None, is_active=True)
    with pytest.raises(ValueError, match="unknown settings"):
        do_update_inbox(inbox, name="Bot", values={"nope": "x"}, secrets={}, team=None, is_active=True)


# --- telegram webhook buttons ---------------------------------------------------------------------
@respx.mock
def test_connect_webhook_calls_set_webhook_and_shows_summary(admin: Client) -> None:
    inbox = telegram_inbox()
    route = respx.post(f"https://tg.example.test/bot{TOKEN}/setWebhook").mock(
        return_value=httpx.Response(200, json={"ok": True, "result": True, "description": "Webhook was set"})
    )
    page = admin.get(f"{LIST}{inbox.pk}/")
    assert not route.called  # a GET never calls the Bot API
    assert page.status_code == 200
    resp = admin.post(f"{LIST}{inbox.pk}/telegram/", {"action": "connect"})
    assert 'id="telegram-error"' not in text(resp), re.findall(r'id="telegram-error">(.*?)<', text(resp))
    assert resp.status_code == 200
    assert route.call_count == 1
    sent = json.loads(route.calls[0].request.content)
    assert sent["url"] == f"https://desk.example.com/webhooks/telegram/{inbox.uuid}/"
    assert sent["secret_token"] == inbox.secret("webhook_secret")
    body = text(resp)
    assert (
        f"Telegram now delivers @shop_bot&#x27;s messages and edits to https://desk.example.com/webhooks/telegram/{inbox.uuid}/"
        in body
    )
    assert TOKEN not in body
    assert inbox.secret("webhook_secret") not in body


@respx.mock
def test_connect_webhook_failure_shows_telegram_error(admin: Client) -> None:
    inbox = telegram_inbox()
    respx.post(f"https://tg.example.test/bot{TOKEN}/setWebhook").mock(
        return_value=httpx.Response(401, json={"ok": False, "error_code": 401, "description": "Unauthorized"})
    )
    resp = admin.post(f"{LIST}{inbox.pk}/telegram/", {"action": "connect"})
    assert resp.status_code == 200
    assert 'id="telegram-summary"' not in text(resp)
    assert "Telegram setWebhook: Unauthorized" in text(resp)
    assert TOKEN not in text(resp)


@respx.mock
def test_check_webhook_shows_info(admin: Client) -> None:
    inbox = telegram_inbox()
    respx.post(f"https://tg.example.test/bot{TOKEN}/getWebhookInfo").mock(
        return_value=httpx.Response(
            200,
            json={
                "ok": True,
                "result": {
                    "url": f"https://desk.example.com/webhooks/telegram/{inbox.uuid}/",
                    "pending_update_count": 3,
                    "last_error_message": "Connection timed out",
                    "last_error_date": 1700000000,
                },
            },
        )
    )
    resp = admin.post(f"{LIST}{inbox.pk}/telegram/", {"action": "check"})
    assert resp.status_code == 200
    body = text(resp)
    assert "(this inbox)" in body
    assert "<dd>3</dd>" in body
    assert "Connection timed out at 2023-11-14 22:13 UTC" in body
    assert TOKEN not in body


def test_telegram_buttons_only_for_telegram(admin: Client) -> None:
    inbox, _ = do_create_inbox(kind="chat", name="Form")
    assert admin.post(f"{LIST}{inbox.pk}/telegram/", {"action": "connect"}).status_code == 404
    assert "Connect webhook" not in text(admin.get(f"{LIST}{inbox.pk}/"))
    assert admin.get(f"{LIST}{inbox.pk}/telegram/").status_code == 405


# --- csrf -----------------------------------------------------------------------------------------
def test_csrf_is_enforced(admin_agent: Any) -> None:
    client = logged_in(admin_agent, enforce_csrf_checks=True)
    resp = client.post(NEW, {"kind": "telegram", "name": "x", "secret-bot_token": TOKEN})
    assert resp.status_code == 403
    inbox = telegram_inbox()
    assert client.post(f"{LIST}{inbox.pk}/", {"name": "Hacked"}).status_code == 403
    assert client.post(f"{LIST}{inbox.pk}/telegram/", {"action": "connect"}).status_code == 403
    assert Inbox.objects.count() == 1
    inbox.refresh_from_db()
    assert inbox.name == "Bot"


def test_edit_email_inbox_with_blank_optional_settings(admin: Client) -> None:
    inbox, _ = do_create_inbox(kind="email", name="Support mail", values={"address": "support@example.com"})
    stored = dict(inbox.settings)
    page = text(admin.get(f"{LIST}{inbox.pk}/"))
    assert 'type="password" id="f-secret-' in page  # email's secrets are not in settings_help
    data = {"name": "Support mail", "is_active": "on", "s-address": "support@example.com"}
    resp = admin.post(f"{LIST}{inbox.pk}/", data)
    assert resp.status_code == 302, field_errors(resp)
    inbox.refresh_from_db()
    assert inbox.settings == stored
