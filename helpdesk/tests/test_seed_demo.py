"""`manage.py seed_demo`: idempotent demo data and working demo logins."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db.models import F
from django.test import Client, override_settings
from django.utils import timezone

from channels_inbox.models import ChatConversation, ChatStatus, ChatVisitor, InboundEvent, Inbox, OutboundDelivery
from customers.models import Customer, Identity, IdentityKind, Organization, OrganizationDomain
from helpdesk.management.commands import seed_demo
from helpdesk.management.commands.seed_demo import (
    DEMO_CALENDAR,
    DEMO_CHAT_INBOX_SLUG,
    DEMO_EMAIL_INBOX_SLUG,
    DEMO_INBOX_SLUG,
    DEMO_ORGANIZATION,
    LOGINS,
)
from helpdesk.models import (
    AgentProfile,
    Attachment,
    BusinessCalendar,
    CannedResponse,
    DeliveryStatus,
    Direction,
    Macro,
    Message,
    Role,
    RoutingMode,
    RoutingRule,
    Rule,
    RuleKind,
    SlaClock,
    SlaClockState,
    SlaPolicy,
    Tag,
    Team,
    Ticket,
    TicketCC,
    TicketEvent,
    TicketStatus,
    User,
)

pytestmark = pytest.mark.django_db

MODELS = (
    User,
    AgentProfile,
    Team,
    Inbox,
    InboundEvent,
    Organization,
    OrganizationDomain,
    Customer,
    Identity,
    Ticket,
    Tag,
    Message,
    Attachment,
    TicketEvent,
    OutboundDelivery,
    TicketCC,
    CannedResponse,
    Macro,
    ChatVisitor,
    ChatConversation,
    BusinessCalendar,
    SlaPolicy,
    SlaClock,
    Rule,
    RoutingRule,
)


# The messaging channels' inboxes are seeded by one test of their own (at the end); the others
# count the demo's core content and run without them.
CHANNEL_TESTS = {"test_the_channel_inboxes_are_seeded_once_from_signed_webhooks_without_network"}


@pytest.fixture(autouse=True)
def _without_channel_inboxes(request: Any) -> Iterator[None]:
    # Its own patcher: tests that call monkeypatch.undo() keep this one.
    with pytest.MonkeyPatch.context() as patch:
        if request.node.name not in CHANNEL_TESTS:
            patch.setattr(seed_demo, "DEMO_CHANNELS", ())
        yield


def row_counts() -> dict[str, int]:
    return {model.__name__: model._default_manager.count() for model in MODELS}


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def assert_prints_the_logins(output: str) -> None:
    assert f"{settings.SITE_URL}/desk/" in output
    for login in LOGINS:
        assert f"{login.email} / {login.password}" in output


def test_second_run_creates_nothing_and_still_prints_the_logins() -> None:
    # given
    first = seed()
    after_first = row_counts()
    # when
    second = seed()
    # then
    assert row_counts() == after_first
    assert "already present" in second
    assert_prints_the_logins(first)
    assert_prints_the_logins(second)
    assert Ticket.objects.filter(inbox__slug=DEMO_INBOX_SLUG).count() == 25
    assert Ticket.objects.filter(inbox__slug=DEMO_EMAIL_INBOX_SLUG).count() == 3
    assert Ticket.objects.filter(inbox__slug=DEMO_CHAT_INBOX_SLUG).count() == 2
    # 4 mails and the chat visitors' 6 messages; 12 customers and the 2 chat visitors
    assert after_first["InboundEvent"] == 4 + 6
    assert after_first["Customer"] == 12 + 2
    assert (after_first["ChatVisitor"], after_first["ChatConversation"]) == (2, 2)
    assert after_first["Team"] == 3
    assert (after_first["CannedResponse"], after_first["Macro"]) == (2, 2)


def test_demo_logins_work_in_the_desk() -> None:
    # given
    seed()
    # then
    for login in LOGINS:
        client = Client()
        assert client.login(username=login.email, password=login.password), login.email
        assert client.get("/desk/?view=all").status_code == 200
    agent = User.objects.get(email="agent@example.com")
    assert agent.agent.role == Role.AGENT
    assert User.objects.get(email="light@example.com").agent.role == Role.LIGHT_AGENT
    assert User.objects.get(email="admin@example.com").is_superuser


def test_rerun_restores_a_changed_demo_password() -> None:
    # given
    seed()
    agent = User.objects.get(email="agent@example.com")
    agent.set_password("something-else-entirely")
    agent.save(update_fields=["password"])
    # when
    output = seed()
    # then
    login = next(a for a in LOGINS if a.email == "agent@example.com")
    assert_prints_the_logins(output)
    assert Client().login(username=login.email, password=login.password)


def test_customers_have_several_normalized_identities() -> None:
    # when
    seed()
    # then
    inbox = Inbox.objects.get(slug=DEMO_INBOX_SLUG)
    # (the chat visitors are customers of their own, with one chat_visitor identity)
    customers = Customer.objects.filter(chat_visitors__isnull=True).prefetch_related("identities")
    assert customers.count() == 12
    for customer in customers:
        kinds = {i.kind: i.value for i in customer.identities.all()}
        assert set(kinds) == {IdentityKind.EXTERNAL, IdentityKind.EMAIL, IdentityKind.PHONE}, customer
        assert kinds[IdentityKind.EXTERNAL].startswith(f"{inbox.uuid}:")
        assert re.fullmatch(r"\+[1-9]\d{7,14}", kinds[IdentityKind.PHONE]), kinds
        assert kinds[IdentityKind.EMAIL] == kinds[IdentityKind.EMAIL].lower()
        assert customer.language in {"en", "cs", "ru", "zh-Hans"}
    # the organization collects its customers by email domain
    acme = Organization.objects.get()
    assert acme.domains.get().domain == "acme.example"
    assert acme.customers.count() == 3


def test_tickets_are_spread_over_statuses_time_teams_and_languages() -> None:
    # given
    started = timezone.now()
    # when
    seed()
    # then: every status category
    tickets = Ticket.objects.all()
    statuses = set(tickets.values_list("status", flat=True))
    assert {"new", "open", "pending", "solved", "closed"} <= statuses
    # a follow-up of a closed ticket
    followup = Ticket.objects.get(followup_of__isnull=False)
    assert followup.followup_of is not None
    assert followup.followup_of.status == TicketStatus.CLOSED
    assert followup.followup_of.thread_key == followup.thread_key
    # assigned and not, in several teams, all on the demo inbox
    assert tickets.filter(assignee__isnull=False).exists()
    assert tickets.filter(assignee__isnull=True).exists()
    assert set(tickets.values_list("team__name", flat=True)) == {"Support", "Billing", "Tier 2"}
    assert set(tickets.values_list("inbox__slug", flat=True)) == {
        DEMO_INBOX_SLUG,
        DEMO_EMAIL_INBOX_SLUG,
        DEMO_CHAT_INBOX_SLUG,
    }
    # notes, replies and attachments
    assert Message.objects.filter(direction=Direction.NOTE).count() >= 5
    assert Message.objects.filter(direction=Direction.OUTBOUND).count() >= 15
    assert Attachment.objects.count() == 3
    # spread over the last month, in the past, and in order on each ticket
    times = sorted(Message.objects.values_list("created_at", flat=True))
    assert times[-1] < started
    assert times[-1] - times[0] > timedelta(days=25)
    assert started - times[0] < timedelta(days=31)
    for ticket in tickets:
        stamps = list(ticket.events.order_by("seq").values_list("created_at", flat=True))
        assert stamps == sorted(stamps), ticket
        assert ticket.created_at <= ticket.last_activity_at < started
    assert not Ticket.objects.filter(updated_at__gte=started).exists()
    # in the product's seed languages
    text = " ".join(Message.objects.values_list("text", flat=True))
    assert re.search(r"[ěščřžýáíéůú]", text)  # Czech
    assert re.search(r"[а-яё]", text)  # Russian
    assert re.search(r"[\u4e00-\u9fff]", text)  # Chinese
    assert re.search(r"\bthe\b", text)  # English


def test_demo_replies_never_reach_the_network(monkeypatch: Any, django_capture_on_commit_callbacks: Any) -> None:
    # given: any attempt to send would fail the test
    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("seed_demo tried to send a delivery")

    monkeypatch.setattr("channels_inbox.adapters.api.httpx.post", no_network)
    # when: the after-commit work runs (Celery is eager in tests)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        seed()
    # then: the queued deliver tasks found the demo history already sent
    assert callbacks
    deliveries = OutboundDelivery.objects.all()
    assert deliveries.count() == Message.objects.filter(direction=Direction.OUTBOUND).count()
    assert set(deliveries.values_list("status", "attempts")) == {(DeliveryStatus.SENT, 0)}
    assert not Message.objects.filter(direction=Direction.OUTBOUND).exclude(delivery_status="sent").exists()
    # and a reply written in the demo goes to a local address that does not exist
    inbox = Inbox.objects.get(slug=DEMO_INBOX_SLUG)
    assert inbox.settings["callback_url"].startswith(settings.SITE_URL + "/demo/")


def test_a_failed_seed_leaves_no_half_demo(monkeypatch: Any) -> None:
    # given: the seed breaks halfway through the conversations
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(seed_demo, "do_add_note", broken)
    # when
    with pytest.raises(RuntimeError):
        seed()
    # then: no marker, no content; the next run seeds everything
    assert not Inbox.objects.exists()
    assert not Ticket.objects.exists()
    monkeypatch.undo()
    seed()
    assert Ticket.objects.count() == 25 + 3 + 2


def test_the_email_inbox_is_fed_through_the_inbound_pipeline() -> None:
    # when
    seed()
    # then: an email inbox without polling or acknowledgements
    inbox = Inbox.objects.get(slug=DEMO_EMAIL_INBOX_SLUG)
    assert inbox.kind == "email"
    assert inbox.name == "Support email"
    assert inbox.settings["address"] == "support@example.com"
    assert not inbox.settings.get("auto_ack")
    assert not inbox.settings.get("imap_host")
    # every demo mail is stored raw and processed onto a ticket of a demo customer
    events = InboundEvent.objects.filter(inbox=inbox)
    assert set(events.values_list("status", flat=True)) == {"processed"}
    assert all(bytes(e.payload).startswith(b"From: ") for e in events)
    tickets = Ticket.objects.filter(inbox=inbox).select_related("customer")
    # the mails come from the demo's own customers (the chat visitors are the others)
    assert Customer.objects.filter(chat_visitors__isnull=True).count() == 12
    # the Czech thread: the reply (quoting the first mail) joined by In-Reply-To and reopened it
    czech = tickets.get(customer__identities__value="jana.novakova@example.cz")
    assert czech.subject == "Reklamace: rozbitý hrnek v zásilce"
    inbound = list(czech.messages.filter(direction=Direction.INBOUND).order_by("created_at"))
    assert len(inbound) == 2
    assert "> Dobrý den" in inbound[1].text
    assert czech.status == TicketStatus.OPEN
    # the GB2312 mail, decoded, with its attachment named in GB2312
    chinese = tickets.get(customer__identities__value="wang.fang@example.cn")
    assert chinese.subject == "三月份发票税号错误"
    assert "税号有误" in chinese.messages.get(direction=Direction.INBOUND).text
    assert Attachment.objects.get(message__ticket=chinese).filename == "发票-2026-03.pdf"
    assert chinese.team is not None
    assert chinese.team.name == "Billing"
    # the colleague on Cc became a CC of the ticket
    cc_ticket = TicketCC.objects.get(ticket__inbox=inbox)
    assert cc_ticket.ticket.customer.name == "Michael Brown"
    assert cc_ticket.customer.name == "Sarah Johnson"


def test_the_demo_macros_apply_to_a_demo_ticket() -> None:
    # given
    from helpdesk.actions.macros import do_apply_macro

    seed()
    ada = User.objects.get(email="agent@example.com")
    ticket = Ticket.objects.filter(inbox__slug=DEMO_INBOX_SLUG, status=TicketStatus.OPEN, team__name="Support").first()
    assert ticket is not None
    # when
    do_apply_macro(ticket, Macro.objects.get(name="Escalate to Tier 2"), actor=ada)
    # then
    ticket.refresh_from_db()
    assert (ticket.team.name if ticket.team else None, ticket.priority, ticket.assignee_id) == ("Tier 2", 3, None)
    assert ticket.messages.filter(direction=Direction.NOTE, text="Escalated by Ada Agent: needs Tier 2.").exists()
    assert "escalated" in set(ticket.tags.values_list("name", flat=True))
    assert CannedResponse.objects.filter(title="Greeting").exists()


@override_settings(CHAT_DEMO_PAGE=True)  # on by default only in the embedded mode
def test_the_chat_inbox_has_the_widget_settings_and_finished_rated_chats() -> None:
    # when
    output = seed()
    # then: a chat inbox embeddable on this server's own site, continued by the demo email inbox
    inbox = Inbox.objects.get(slug=DEMO_CHAT_INBOX_SLUG)
    assert (inbox.kind, inbox.name, inbox.is_active) == ("chat", "Website chat", True)
    config = inbox.settings
    assert config["greeting"]
    assert (config["prechat_name"], config["prechat_email"]) == ("optional", "required")
    assert config["office_hours"]["tz"] == "Europe/Prague"
    assert config["office_hours"]["days"]["mon"] == [["08:00", "20:00"]]
    assert [rule["key"] for rule in config["proactive"]] == ["demo-help"]
    assert settings.SITE_URL in config["allowed_origins"].split()
    assert config["continuity_email_inbox"] == DEMO_EMAIL_INBOX_SLUG
    assert inbox.secret("identity_secret")
    # two chats, through the widget's write path: visitor, pre-chat answers, agent, end, rating
    conversations = ChatConversation.objects.filter(inbox=inbox).select_related("ticket__assignee", "visitor")
    assert conversations.count() == 2
    for conv in conversations:
        assert conv.status == ChatStatus.ENDED
        assert conv.rating in (4, 5)
        assert conv.rating_comment
        assert conv.prechat["email"] == conv.visitor.email
        assert conv.ticket.channel == "chat"
        assert conv.ticket.status == TicketStatus.SOLVED
        assert conv.ticket.assignee is not None
        directions = set(conv.ticket.messages.values_list("direction", flat=True))
        assert directions == {Direction.INBOUND, Direction.OUTBOUND}
        assert conv.ticket.events.filter(type="chat_rated").count() == 1
        assert conv.ended_at is not None
        assert conv.rated_at is not None
        assert conv.rated_at < timezone.now() - timedelta(hours=1)
    assert {c.visitor.name for c in conversations} == {"Tomáš Dvořák", ""}  # the name is optional
    # and the output says where to try it, with the embed snippet
    assert f"{settings.SITE_URL}/widget/v1/demo/" in output
    assert f'data-inbox="{inbox.public_token}"' in output
    # and the demo page embeds it
    page = Client().get("/widget/v1/demo/")
    assert page.status_code == 200, page.content
    assert f'data-inbox="{inbox.public_token}"' in page.content.decode()
    assert f'src="{settings.SITE_URL}/widget/v1/loader.js"' in page.content.decode()


def test_the_chat_inbox_is_seeded_on_its_own_on_an_install_seeded_before_it(monkeypatch: Any) -> None:
    # given: a demo seeded by a version without live chat
    monkeypatch.setattr(seed_demo.Command, "_seed_chat", lambda self, users: 0)
    seed()
    assert not Inbox.objects.filter(kind="chat").exists()
    tickets = Ticket.objects.count()
    monkeypatch.undo()
    # when
    output = seed()
    # then: only the chat inbox and its chats are new
    assert Inbox.objects.filter(slug=DEMO_CHAT_INBOX_SLUG).exists()
    assert Ticket.objects.count() == tickets + 2
    assert "Demo chat: inbox 'Website chat' with 2 chats." in output
    # and a third run creates nothing more
    counts = row_counts()
    seed()
    assert row_counts() == counts


@override_settings(CHAT_DEMO_PAGE=True)  # on by default only in the embedded mode
def test_the_demo_page_without_a_chat_inbox_says_how_to_make_one() -> None:
    # when
    page = Client().get("/widget/v1/demo/")
    # then
    assert page.status_code == 404
    assert "inbox create --kind chat" in page.content.decode()


# --- calendar, SLA, rules and routing (issue 6) --------------------------------------------------


def test_the_demo_configures_a_calendar_sla_policies_rules_and_routing_once() -> None:
    # when
    first = seed()
    second = seed()
    # then
    assert "Demo calendar, SLA policies, rules and routing: 7 created" in first
    assert "calendar" not in second.split("Switchboard demo")[0]
    calendar = BusinessCalendar.objects.get()
    assert (calendar.name, calendar.time_zone, calendar.is_default) == (DEMO_CALENDAR, "Europe/Prague", True)
    assert calendar.hours == {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
    holidays = {h["date"]: h["name"] for h in calendar.holidays}
    assert len(holidays) == 2 * 13
    assert holidays["2026-04-03"] == "Good Friday"
    assert holidays["2027-03-29"] == "Easter Monday"
    assert "2026-12-24" in holidays
    assert "2027-11-17" in holidays
    policies = list(SlaPolicy.objects.order_by("position", "id"))
    assert [p.name for p in policies] == ["VIP", "Standard"]
    vip, standard = policies
    assert vip.conditions["any"]
    assert standard.conditions in ({}, {"all": [], "any": []})
    assert set(standard.targets) == {"1", "2", "3", "4"}
    assert set(standard.targets["2"]) == {"first_reply", "next_reply", "resolution"}
    assert standard.calendar == calendar
    assert vip.calendar == calendar
    assert sorted(Rule.objects.values_list("kind", "name")) == [
        (RuleKind.TIME, "Remind pending after 48 hours"),
        (RuleKind.TRIGGER, "Auto-reply outside business hours"),
        (RuleKind.TRIGGER, "Urgent tickets to Tier 2"),
    ]
    routing = RoutingRule.objects.get()
    assert routing.team.name == "Billing"
    assert dict(Team.objects.values_list("name", "routing")) == {
        "Support": RoutingMode.ROUND_ROBIN,
        "Billing": RoutingMode.MANUAL,
        "Tier 2": RoutingMode.MANUAL,
    }


def test_the_demo_tickets_get_sla_clocks_and_the_rules_leave_their_history_alone() -> None:
    # when
    seed()
    # then: every unsolved demo ticket has a policy and a deadline; ACME's tickets are VIP
    unsolved = Ticket.objects.exclude(status__in=[TicketStatus.SOLVED, TicketStatus.CLOSED])
    assert unsolved.count() > 5
    assert not unsolved.filter(sla_policy__isnull=True).exists()
    assert not unsolved.filter(sla_due_at__isnull=True).exclude(status=TicketStatus.PENDING).exists()
    vip = Ticket.objects.filter(sla_policy__name="VIP")
    assert vip.exists()
    assert set(vip.values_list("customer__organization__name", flat=True)) == {DEMO_ORGANIZATION}
    assert SlaClock.objects.filter(state=SlaClockState.RUNNING).exists()
    # every ticket's history was processed before the rules existed: none fired on it
    assert not TicketEvent.objects.filter(type="rule_fired").exists()
    assert not Ticket.objects.filter(changes_seq__lt=F("last_event_seq")).exists()


def test_the_due_soon_view_of_the_demo_opens() -> None:
    # given
    seed()
    client = Client()
    client.force_login(User.objects.get(email="admin@example.com"))
    # when
    resp = client.get("/desk/", {"view": "due_soon"})
    # then
    assert resp.status_code == 200
    tickets = resp.context["page"].tickets
    assert tickets
    assert [t.sla_due_at for t in tickets] == sorted(t.sla_due_at for t in tickets)
    assert 'class="deadline' in resp.content.decode()


def test_a_rerun_recreates_missing_configuration_and_keeps_an_admins_routing_choice() -> None:
    # given: the demo, then an admin deletes the rules and switches Support back to manual
    seed()
    Rule.objects.filter(kind=RuleKind.TIME).delete()
    Team.objects.filter(name="Support").update(routing=RoutingMode.MANUAL)
    # when
    output = seed()
    # then
    assert "Demo calendar, SLA policies, rules and routing: 1 created" in output
    assert Rule.objects.count() == 3
    assert SlaPolicy.objects.count() == 2
    assert BusinessCalendar.objects.count() == 1
    assert Team.objects.get(name="Support").routing == RoutingMode.MANUAL


# --- messaging channels (issue 7) -------------------------------------------------------------


def test_the_channel_inboxes_are_seeded_once_from_signed_webhooks_without_network(
    django_capture_on_commit_callbacks: Any,
) -> None:
    import respx

    from bench import provider_webhooks as pw
    from channels_inbox.adapters import adapter_kinds
    from channels_inbox.models import InboundEventStatus

    kinds = set(adapter_kinds())
    expected = [c for c in seed_demo.DEMO_CHANNELS if c.kind in kinds]
    # when: seeded (after-commit work included) with every outbound request refused
    with respx.mock(assert_all_called=False) as router, django_capture_on_commit_callbacks(execute=True):
        anything = router.route().respond(599)  # records any request (respx would otherwise just raise)
        first = seed()
    assert not anything.called, [str(call.request.url) for call in anything.calls]
    # then: one inbox per registered channel kind, and none for the others
    inboxes = {i.slug: i for i in Inbox.objects.filter(slug__in=seed_demo.DEMO_CHANNEL_SLUGS)}
    assert set(inboxes) == {c.slug for c in expected}
    texts = {text for _who, text in seed_demo.DEMO_CHANNEL_MESSAGES}
    for channel in expected:
        inbox = inboxes[channel.slug]
        assert (inbox.kind, inbox.name) == (channel.kind, channel.name)
        if channel.kind not in pw.BUILDERS:
            assert not InboundEvent.objects.filter(inbox=inbox).exists()
            continue
        assert f"{settings.SITE_URL}/webhooks/{inbox.kind}/{inbox.uuid}/" in first
        # its fixed demo secret, so bench/replay_webhooks.py can sign for it
        assert pw.inbox_secret(inbox) in pw.DEMO_SECRETS.values()
        # two signed webhooks, stored raw and processed
        events = InboundEvent.objects.filter(inbox=inbox)
        assert list(events.values_list("status", flat=True)) == [InboundEventStatus.PROCESSED] * 2
        if channel.kind != "twilio_voice":
            received = Message.objects.filter(ticket__inbox=inbox, direction=Direction.INBOUND)
            assert set(received.values_list("text", flat=True)) == texts
            assert Ticket.objects.filter(inbox=inbox).count() == 2
            assert set(Ticket.objects.filter(inbox=inbox).values_list("channel", flat=True)) == {channel.kind}
    if expected:
        assert f"Demo channels: {len(expected)} inboxes" in first
    # and a rerun creates nothing
    counts = row_counts()
    second = seed()
    assert row_counts() == counts
    assert "Demo channels" not in second
