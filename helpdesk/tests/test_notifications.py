"""Notifications: @mentions in notes, assignments, the read marks, the badge, email and live."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.core import mail
from django.db import transaction
from django.test import Client
from django.utils import timezone

from helpdesk import realtime
from helpdesk.actions.agents import do_create_agent
from helpdesk.actions.notifications import (
    MAX_MENTIONS,
    do_mark_all_read,
    do_mark_notification_read,
    do_send_notification_email,
    find_mentions,
    mention_report,
    unread_count,
)
from helpdesk.actions.replies import do_add_note, do_reply
from helpdesk.actions.tickets import do_assign_ticket
from helpdesk.models import AgentProfile, Notification, NotificationKind, Ticket
from helpdesk.tests.conftest import ingest, logged_in, new_ticket

pytestmark = pytest.mark.django_db


def flashed(resp: Any) -> list[str]:
    return [str(m) for m in get_messages(resp.wsgi_request)]


@pytest.fixture
def ticket(support_team: Any) -> Ticket:
    return new_ticket(team=support_team)


@pytest.fixture
def published(monkeypatch: Any) -> list[tuple[int, str, dict[str, Any]]]:
    """What went to agents' live groups (helpdesk/realtime.py publish_to_agent), recorded."""
    sent: list[tuple[int, str, dict[str, Any]]] = []

    def record(user_id: int, kind: str, payload: dict[str, Any]) -> None:
        sent.append((user_id, kind, payload))

    monkeypatch.setattr(realtime, "publish_to_agent", record, raising=False)
    return sent


def wants_email(user: Any) -> None:
    AgentProfile.objects.filter(user=user).update(notify_by_email=True)


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "handles"),
    [
        ("@ada, @bob. (@carl) @dan's @eve! @fay? @gus:", ["ada", "bob", "carl", "dan", "eve", "fay", "gus"]),
        ("ask @Ada and @ADA and @ada again", ["ada"]),
        ("write to bob@example.com or mail@host", []),
        ("cc @alice@example.com.", ["alice@example.com"]),
        ("@alice@example", ["alice"]),
        ("@@bob @ @. @-", ["-"]),
        ("line one\n@ann\tand @Zoë", ["ann", "zoë"]),
        ("@first.last, @first.last.", ["first.last"]),
        ("", []),
    ],
)
def test_find_mentions(text: str, handles: list[str]) -> None:
    assert find_mentions(text) == handles


def test_find_mentions_is_quick_and_bounded_on_hostile_text() -> None:
    # given: 100,000 characters built to make a regex backtrack, and an overlong handle
    hostile = ("@a" * 25_000) + ("@" + "b." * 20_000) + " @" + "x" * 400 + " " + "@c@d-" * 5_000
    # when
    started = time.monotonic()
    handles = find_mentions(hostile)
    # then
    assert time.monotonic() - started < 2
    assert all(len(h) <= 254 for h in handles)
    assert "x" * 400 not in handles


# --- mentions in notes --------------------------------------------------------------------------


def test_a_mention_in_a_note_notifies_the_agent_once(agent: Any, admin_agent: Any, ticket: Ticket) -> None:
    # when
    note = do_add_note(ticket, actor=agent, text="@admin please look, @Admin! cc @admin@example.com")
    # then
    rows = list(Notification.objects.all())
    assert [(n.recipient_id, n.kind, n.message_id, n.actor_id) for n in rows] == [
        (admin_agent.pk, NotificationKind.MENTION, note.pk, agent.pk)
    ]
    report = mention_report(note)
    assert report is not None
    assert report.notified == [admin_agent]
    assert report.problems() == []


def test_mentioning_yourself_creates_nothing(agent: Any, ticket: Ticket) -> None:
    note = do_add_note(ticket, actor=agent, text="note to self @agent")
    assert Notification.objects.count() == 0
    report = mention_report(note)
    assert report is not None
    assert report.problems() == []


def test_an_agent_who_cannot_see_the_ticket_is_not_notified(agent: Any, billing_agent: Any, ticket: Ticket) -> None:
    # given: a Support ticket; the Billing agent does not see it
    # when
    note = do_add_note(ticket, actor=agent, text="@bill can you check?")
    # then
    assert Notification.objects.count() == 0
    report = mention_report(note)
    assert report is not None
    assert report.cannot_view == ["bill"]
    assert "cannot see this ticket" in report.problems()[0]


def test_unknown_inactive_and_ambiguous_names_notify_nobody(agent: Any, admin_agent: Any, ticket: Ticket) -> None:
    # given
    gone = do_create_agent(email="gone@example.com", name="Gil Gone", teams=["Support"])
    gone.is_active = False
    gone.save()
    twin = do_create_agent(email="admin@other.example", name="Ann Other", role="supervisor")
    # when
    note = do_add_note(ticket, actor=agent, text="@nobody @gone @admin and finally @admin@other.example")
    # then
    report = mention_report(note)
    assert report is not None
    assert report.unknown == ["nobody", "gone"]
    assert report.ambiguous == ["admin"]
    assert list(Notification.objects.values_list("recipient_id", flat=True)) == [twin.pk]


def test_a_public_reply_never_notifies(agent: Any, admin_agent: Any, api_inbox: Any) -> None:
    # given
    ticket = ingest(api_inbox)
    # when
    do_reply(ticket, actor=agent, text="Our colleague @admin will call you.")
    # then
    assert Notification.objects.count() == 0


def test_many_mentions_are_looked_up_in_bounded_queries(
    agent: Any, admin_agent: Any, ticket: Ticket, django_assert_max_num_queries: Any
) -> None:
    # given: far more names than are looked up
    text = " ".join(f"@someone{i}" for i in range(500)) + " @admin"
    # when
    with django_assert_max_num_queries(20):
        note = do_add_note(ticket, actor=agent, text=text)
    # then
    report = mention_report(note)
    assert report is not None
    assert report.ignored == 501 - MAX_MENTIONS
    assert len(report.unknown) == MAX_MENTIONS
    assert Notification.objects.count() == 0  # @admin came after the first 50 names
    assert any("were ignored" in p for p in report.problems())


def test_the_note_page_tells_the_author_who_was_not_notified(
    agent: Any, admin_agent: Any, billing_agent: Any, ticket: Ticket
) -> None:
    # given
    client = logged_in(agent)
    # when
    resp = client.post(
        f"/desk/tickets/{ticket.number}/reply/",
        {"mode": "note", "text": "@bill @admin @nobody", "seen_seq": ticket.last_event_seq},
    )
    # then
    assert resp.status_code == 302, resp.content
    texts = flashed(resp)
    assert any("cannot see this ticket" in t and "@bill" in t for t in texts), texts
    assert any("@nobody" in t for t in texts), texts
    assert any(t == "Notified Alan Admin." for t in texts), texts
    assert Notification.objects.get().recipient == admin_agent


def test_mentions_are_highlighted_and_the_note_escaped(agent: Any, admin_agent: Any, ticket: Ticket) -> None:
    # given
    do_add_note(ticket, actor=agent, text='<script>alert(1)</script> @admin "<b>x</b>"\nbye')
    # when
    resp = logged_in(agent).get(f"/desk/tickets/{ticket.number}/")
    # then
    body = resp.content.decode()
    assert "<script>alert(1)</script>" not in body
    assert (
        '&lt;script&gt;alert(1)&lt;/script&gt; <span class="mention">@admin</span> '
        "&quot;&lt;b&gt;x&lt;/b&gt;&quot;<br>bye" in body
    )


# --- assignments ---------------------------------------------------------------------------------


def test_assignment_by_someone_else_notifies_the_assignee(agent: Any, admin_agent: Any, ticket: Ticket) -> None:
    # when
    do_assign_ticket(ticket, assignee=agent, actor=admin_agent)
    # then
    n = Notification.objects.get()
    assert (n.recipient_id, n.kind, n.actor_id, n.message_id) == (
        agent.pk,
        NotificationKind.ASSIGNED,
        admin_agent.pk,
        None,
    )


def test_taking_a_ticket_yourself_or_unassigning_notifies_nobody(agent: Any, admin_agent: Any, ticket: Ticket) -> None:
    do_assign_ticket(ticket, assignee=agent, actor=agent)
    do_assign_ticket(ticket, assignee=None, actor=admin_agent)
    do_assign_ticket(ticket, assignee=admin_agent, actor=admin_agent)
    assert Notification.objects.count() == 0


# --- after commit: live, badge, email ----------------------------------------------------------


def test_live_message_and_badge_count_go_out_after_commit_only(
    agent: Any, admin_agent: Any, ticket: Ticket, published: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    # when
    with django_capture_on_commit_callbacks(execute=True):
        note = do_add_note(ticket, actor=agent, text="@admin")
        # then: nothing before the commit
        assert published == []
    n = Notification.objects.get(message=note)
    assert published == [
        (
            admin_agent.pk,
            "notification",
            {
                "id": n.pk,
                "kind": "mention",
                "ticket_number": ticket.number,
                "text": f"Ada Agent mentioned you on ticket #{ticket.number}",
                "unread": 1,
            },
        )
    ]
    assert unread_count(admin_agent) == 1


@pytest.mark.django_db(transaction=True)
def test_the_notification_reaches_the_agents_live_group(
    agent: Any, admin_agent: Any, ticket: Ticket, monkeypatch: Any
) -> None:
    # given: real commits, the real publish_to_agent, and a channel layer that records
    sent: list[tuple[str, dict[str, Any]]] = []

    class RecordingLayer:
        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            sent.append((group, message))

    monkeypatch.setattr(realtime, "get_channel_layer", RecordingLayer)
    # when
    do_assign_ticket(ticket, assignee=agent, actor=admin_agent)
    # then
    frames = [(g, m) for g, m in sent if m["type"] == "agent.event"]
    assert [(g, m["kind"], m["payload"]["kind"], m["payload"]["unread"]) for g, m in frames] == [
        (f"agent.{agent.pk}", "notification", "assigned", 1)
    ]


def test_a_rolled_back_note_publishes_and_sends_nothing(
    agent: Any, admin_agent: Any, ticket: Ticket, published: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    # given
    wants_email(admin_agent)

    # when
    def note_then_fail() -> None:
        with transaction.atomic():
            do_add_note(ticket, actor=agent, text="@admin")
            raise RuntimeError("rolled back")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError, match="rolled back"):
        note_then_fail()
    # then
    assert published == []
    assert mail.outbox == []
    assert Notification.objects.count() == 0


def test_the_email_is_sent_once_when_wanted(
    agent: Any, admin_agent: Any, ticket: Ticket, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    settings.SITE_URL = "https://desk.example.org"
    wants_email(admin_agent)
    ticket.subject = "Card 4111 1111 1111 1111 expired"
    ticket.save(update_fields=["subject"])
    # when
    with django_capture_on_commit_callbacks(execute=True):
        do_add_note(ticket, actor=agent, text="@admin the customer's token is s3cr3t")
    n = Notification.objects.get()
    again = do_send_notification_email(n.pk)
    # then
    assert again == "already sent"
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["admin@example.com"]
    assert sent.subject == f"[Switchboard] Ada Agent mentioned you on ticket #{ticket.number}"
    assert f"https://desk.example.org/desk/tickets/{ticket.number}/" in sent.body
    assert "s3cr3t" not in sent.body
    assert "4111" not in sent.body
    assert "4111" not in sent.subject
    n.refresh_from_db()
    assert n.emailed_at is not None


def test_a_lost_email_task_is_queued_again_by_the_sweep(
    agent: Any, admin_agent: Any, ticket: Ticket, django_capture_on_commit_callbacks: Any
) -> None:
    from datetime import timedelta

    from django.conf import settings

    from helpdesk.actions.notifications import do_requeue_unsent_emails
    from helpdesk.tasks import sweep_notification_emails

    # given: the agent wants email, but the queued task never ran (no on-commit here)
    wants_email(admin_agent)
    do_add_note(ticket, actor=agent, text="@admin lost")
    do_add_note(ticket, actor=agent, text="@admin read meanwhile")
    read = Notification.objects.get(message__text="@admin read meanwhile")
    Notification.objects.filter(pk=read.pk).update(read_at=timezone.now())
    now = timezone.now()
    # when: too early for the sweep; then due
    assert do_requeue_unsent_emails(now=now) == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert do_requeue_unsent_emails(now=now + timedelta(minutes=3)) == 1
    # then: sent once; the next sweep finds nothing; a day later it gives up anyway
    assert len(mail.outbox) == 1
    assert "@admin" not in mail.outbox[0].body
    assert do_requeue_unsent_emails(now=now + timedelta(minutes=5)) == 0
    assert do_requeue_unsent_emails(now=now + timedelta(days=2)) == 0
    assert settings.CELERY_BEAT_SCHEDULE["sweep-notification-emails"]["task"] == sweep_notification_emails.name


def test_no_email_without_the_preference(
    agent: Any, admin_agent: Any, ticket: Ticket, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        do_add_note(ticket, actor=agent, text="@admin")
        do_assign_ticket(ticket, assignee=admin_agent, actor=agent)
    assert Notification.objects.count() == 2
    assert mail.outbox == []
    assert do_send_notification_email(Notification.objects.first().pk) == "not wanted"  # type: ignore[union-attr]
    assert do_send_notification_email(10**12) == "missing"


def test_an_assignment_email(
    agent: Any, admin_agent: Any, ticket: Ticket, django_capture_on_commit_callbacks: Any
) -> None:
    wants_email(agent)
    with django_capture_on_commit_callbacks(execute=True):
        do_assign_ticket(ticket, assignee=agent, actor=admin_agent)
    assert [m.subject for m in mail.outbox] == [f"[Switchboard] Alan Admin assigned ticket #{ticket.number} to you"]


def test_the_badge_count_is_cached_and_follows_reads(
    agent: Any, admin_agent: Any, ticket: Ticket, published: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    # given
    with django_capture_on_commit_callbacks(execute=True):
        first = do_add_note(ticket, actor=agent, text="@admin one")
        do_add_note(ticket, actor=agent, text="@admin two")
    assert unread_count(admin_agent) == 2
    # when
    with django_capture_on_commit_callbacks(execute=True):
        do_mark_notification_read(Notification.objects.get(message=first), actor=admin_agent)
    # then
    assert unread_count(admin_agent) == 1
    assert published[-1] == (admin_agent.pk, "notifications_read", {"unread": 1})
    with django_capture_on_commit_callbacks(execute=True):
        assert do_mark_all_read(actor=admin_agent) == 1
    assert unread_count(admin_agent) == 0


def test_the_badge_reads_the_cache_without_a_query(
    agent: Any, admin_agent: Any, ticket: Ticket, django_assert_num_queries: Any
) -> None:
    # given: nothing cached yet (the after-commit work did not run here)
    do_add_note(ticket, actor=agent, text="@admin")
    with django_assert_num_queries(1):
        assert unread_count(admin_agent) == 1
    # when / then
    with django_assert_num_queries(0):
        assert unread_count(admin_agent) == 1


def test_the_top_bar_shows_the_unread_count(agent: Any, admin_agent: Any, ticket: Ticket) -> None:
    do_add_note(ticket, actor=agent, text="@admin")
    resp = logged_in(admin_agent).get("/desk/")
    body = resp.content.decode()
    assert 'id="notif-count" aria-hidden="true">1</span>' in body
    assert ", 1 unread" in body
    assert "Alan Admin</a>" in body  # the name stays in the top bar, linking to the preferences


# --- the notifications page -------------------------------------------------------------------


def _notes(ticket: Ticket, author: Any, n: int) -> None:
    for i in range(n):
        do_add_note(ticket, actor=author, text=f"@agent note {i}")


def test_the_page_lists_newest_first_by_cursor_in_fixed_queries(
    agent: Any, admin_agent: Any, ticket: Ticket, django_assert_num_queries: Any
) -> None:
    # given
    _notes(ticket, admin_agent, 3)
    client = logged_in(agent)
    # when / then: session, user, role, teams, the page of notifications (ticket and actor joined)
    with django_assert_num_queries(5):
        resp = client.get("/desk/notifications/")
    assert resp.status_code == 200, resp.content
    ids = list(Notification.objects.order_by("-id").values_list("pk", flat=True))
    assert [i["n"].pk for i in resp.context["items"]] == ids
    # given: more than a page
    _notes(ticket, admin_agent, 27)
    with django_assert_num_queries(5):
        resp = client.get("/desk/notifications/")
    page = resp.context["items"]
    assert len(page) == 25
    assert resp.context["next_cursor"] == page[-1]["n"].pk
    resp = client.get("/desk/notifications/", {"cursor": resp.context["next_cursor"]})
    assert len(resp.context["items"]) == 5
    assert resp.context["next_cursor"] is None
    assert ticket.subject in resp.content.decode()


@pytest.mark.parametrize("cursor", ["abc", "-1", "0", "9" * 30, "1.5", "１２"])
def test_a_malformed_cursor_is_a_clear_400(agent: Any, cursor: str) -> None:
    resp = logged_in(agent).get("/desk/notifications/", {"cursor": cursor})
    assert resp.status_code == 400
    assert "page link is not valid" in resp.content.decode()


def test_opening_marks_read_and_goes_to_the_ticket(agent: Any, admin_agent: Any, ticket: Ticket) -> None:
    do_add_note(ticket, actor=admin_agent, text="@agent")
    n = Notification.objects.get()
    resp = logged_in(agent).post(f"/desk/notifications/{n.pk}/open/")
    assert resp.status_code == 302
    assert resp["Location"] == f"/desk/tickets/{ticket.number}/"
    n.refresh_from_db()
    assert n.read_at is not None


def test_opening_the_ticket_itself_reads_its_notifications_only(
    agent: Any, admin_agent: Any, ticket: Ticket, django_capture_on_commit_callbacks: Any
) -> None:
    # given: mentioned on this ticket and on another one
    other = new_ticket()
    with django_capture_on_commit_callbacks(execute=True):
        do_add_note(ticket, actor=admin_agent, text="@agent here")
        do_add_note(other, actor=admin_agent, text="@agent there")
    client = logged_in(agent)
    assert unread_count(agent) == 2
    # when: the agent opens the ticket from the list (or an email link)
    with django_capture_on_commit_callbacks(execute=True):
        resp = client.get(f"/desk/tickets/{ticket.number}/")
    # then: its notification is read, the other one not
    assert resp.status_code == 200, resp.content
    unread = Notification.objects.filter(read_at__isnull=True)
    assert [n.ticket_id for n in unread] == [other.pk]
    assert unread_count(agent) == 1


def test_opening_a_ticket_with_nothing_unread_costs_no_query(
    agent: Any, ticket: Ticket, django_assert_num_queries: Any
) -> None:
    from helpdesk.actions.notifications import do_mark_ticket_notifications_read

    unread_count(agent)  # the cache knows: nothing unread
    with django_assert_num_queries(0):
        assert do_mark_ticket_notifications_read(ticket, actor=agent) == 0


def test_opening_a_ticket_out_of_sight_says_so(agent: Any, admin_agent: Any, billing_team: Any, ticket: Ticket) -> None:
    # given: mentioned, then the ticket moved to a team the agent is not in
    do_add_note(ticket, actor=admin_agent, text="@agent")
    Ticket.objects.filter(pk=ticket.pk).update(team=billing_team)
    n = Notification.objects.get()
    client = logged_in(agent)
    # the list no longer shows the ticket's subject
    assert ticket.subject not in client.get("/desk/notifications/").content.decode()
    # when
    resp = client.post(f"/desk/notifications/{n.pk}/open/")
    # then
    assert resp.status_code == 302
    assert resp["Location"] == "/desk/notifications/"
    assert flashed(resp) == [f"Ticket #{ticket.number} is no longer in your views."]


def test_read_one_and_all(agent: Any, admin_agent: Any, ticket: Ticket) -> None:
    _notes(ticket, admin_agent, 3)
    first, *_rest = Notification.objects.order_by("id")
    client = logged_in(agent)
    assert client.post(f"/desk/notifications/{first.pk}/read/").status_code == 302
    assert (
        client.post(f"/desk/notifications/{first.pk}/read/", headers={"Accept": "application/json"}).status_code == 204
    )
    assert Notification.objects.filter(read_at__isnull=True).count() == 2
    resp = client.post("/desk/notifications/read/")
    assert flashed(resp) == ["Marked 2 notifications read."]
    assert Notification.objects.filter(read_at__isnull=True).count() == 0


def test_another_agents_notifications_are_not_readable_or_markable(
    agent: Any, admin_agent: Any, light_agent: Any, ticket: Ticket
) -> None:
    # given: a notification of the agent
    do_add_note(ticket, actor=admin_agent, text="@agent")
    n = Notification.objects.get()
    other = logged_in(light_agent)
    # when / then
    assert other.post(f"/desk/notifications/{n.pk}/read/").status_code == 404
    assert other.post(f"/desk/notifications/{n.pk}/open/").status_code == 404
    assert other.post("/desk/notifications/read/").status_code == 302
    assert other.get("/desk/notifications/").context["items"] == []
    n.refresh_from_db()
    assert n.read_at is None
    with pytest.raises(Exception, match="someone else"):
        do_mark_notification_read(n, actor=light_agent)


@pytest.mark.parametrize("path", ["/desk/notifications/abc/read/", "/desk/notifications/-1/read/"])
def test_malformed_ids_are_404(agent: Any, path: str) -> None:
    assert logged_in(agent).post(path).status_code == 404


def test_an_id_beyond_the_column_is_404(agent: Any) -> None:
    client = logged_in(agent)
    assert client.post(f"/desk/notifications/{2**63}/read/").status_code == 404
    assert client.post(f"/desk/notifications/{10**30}/open/").status_code == 404


def test_read_marks_are_posts_with_csrf(agent: Any, admin_agent: Any, ticket: Ticket) -> None:
    do_add_note(ticket, actor=admin_agent, text="@agent")
    n = Notification.objects.get()
    assert logged_in(agent).get(f"/desk/notifications/{n.pk}/read/").status_code == 405
    strict = logged_in(agent, enforce_csrf_checks=True)
    assert strict.post(f"/desk/notifications/{n.pk}/read/").status_code == 403
    assert strict.post("/desk/notifications/read/").status_code == 403
    assert strict.post(f"/desk/notifications/{n.pk}/open/").status_code == 403
    n.refresh_from_db()
    assert n.read_at is None


def test_non_staff_cannot_see_the_page(db: Any) -> None:
    from helpdesk.models import User

    user = User.objects.create_user(username="visitor", email="v@example.com", password="x")
    assert logged_in(user).get("/desk/notifications/").status_code == 403
    assert Client().get("/desk/notifications/").status_code == 302


# --- preferences --------------------------------------------------------------------------------


def test_preferences_turn_email_on_and_off(agent: Any) -> None:
    client = logged_in(agent)
    resp = client.get("/desk/me/")
    assert resp.status_code == 200
    assert 'id="notify-by-email"' in resp.content.decode()
    assert "<code>@agent</code>" in resp.content.decode()
    resp = client.post("/desk/me/", {"notify_by_email": "on"})
    assert resp.status_code == 302
    assert flashed(resp) == ["Email notifications are on."]
    assert AgentProfile.objects.get(user=agent).notify_by_email is True
    client.post("/desk/me/", {})
    assert AgentProfile.objects.get(user=agent).notify_by_email is False


def test_preferences_reject_a_strange_value_and_need_csrf(agent: Any) -> None:
    assert logged_in(agent).post("/desk/me/", {"notify_by_email": "x" * 5000}).status_code == 400
    assert logged_in(agent, enforce_csrf_checks=True).post("/desk/me/", {"notify_by_email": "on"}).status_code == 403
    assert AgentProfile.objects.get(user=agent).notify_by_email is False


# --- mention suggestions --------------------------------------------------------------------------


def test_suggestions_are_the_agents_who_see_the_ticket(
    agent: Any, admin_agent: Any, billing_agent: Any, light_agent: Any, ticket: Ticket
) -> None:
    client = logged_in(agent)
    resp = client.get(f"/desk/tickets/{ticket.number}/mentionable/")
    assert resp.status_code == 200
    assert resp.json() == {
        "agents": [
            {"id": admin_agent.pk, "handle": "admin", "name": "Alan Admin"},
            {"id": light_agent.pk, "handle": "light", "name": "Lee Light"},
        ]
    }
    assert [a["handle"] for a in client.get(f"/desk/tickets/{ticket.number}/mentionable/?q=@le").json()["agents"]] == [
        "light"
    ]


def test_suggestions_use_the_address_when_a_local_part_is_shared(agent: Any, admin_agent: Any, ticket: Ticket) -> None:
    do_create_agent(email="admin@other.example", name="Ann Other", role="supervisor")
    handles = [
        a["handle"] for a in logged_in(agent).get(f"/desk/tickets/{ticket.number}/mentionable/?q=a").json()["agents"]
    ]
    assert handles == ["admin@example.com", "admin@other.example"]


def test_suggestions_refuse_long_queries_and_invisible_tickets(agent: Any, billing_team: Any) -> None:
    hidden = new_ticket(team=billing_team)
    visible = new_ticket(team=None)
    client = logged_in(agent)
    assert client.get(f"/desk/tickets/{visible.number}/mentionable/", {"q": "a" * 101}).status_code == 400
    assert client.get(f"/desk/tickets/{hidden.number}/mentionable/").status_code == 404
