"""`manage.py seed_demo` — demo data for a fresh install, then the demo logins.

What it creates: three teams, six staff accounts (three of them with the printed
logins), the API-channel inbox "Website API", an organization with an email domain,
twelve customers with an external id, an email and an E.164 phone each, and 25 tickets
in English, Czech, Russian and Chinese spread over the last 30 days, in every status,
with replies, internal notes, assignments, team moves, attachments and one follow-up
of a closed ticket.

The email inbox "Support email" (support@example.com, no IMAP, no auto-acknowledgement)
gets three tickets made from raw demo mails fed through the real inbound pipeline
(`do_receive_email` and processing): a Czech thread of two mails, the second quoting the
first; a GB2312-encoded Chinese mail with an attachment; and a mail with a colleague on
Cc. Replies written there go out through EMAIL_URL (the console by default).

Everything is written through the actions, exactly as webhooks and agents would write
it; only timestamps are moved back afterwards (see `_backdate`), because the actions
stamp "now" and a demo needs a month of history.

Idempotent: the inbox slug `demo-website-api` marks the demo as seeded. The content is
written in one transaction, so the marker exists only if everything else does; a second
run creates nothing and only makes sure the demo logins work (their passwords are set
again to the printed ones). The email inbox is seeded on its own when it is missing
(also on an install seeded before it existed); its mails are deduplicated by Message-ID
like any redelivered mail, so a rerun stores and creates nothing.

The messaging channels (SMS, WhatsApp via Twilio, WhatsApp Cloud, Messenger, Instagram,
Telegram, Voice, Web form) get one inbox each, for every kind whose adapter is registered, with
fixed demo credentials (bench/provider_webhooks.py DEMO_VALUES: the demo's webhooks can then be
signed from outside, see bench/replay_webhooks.py). Each webhook channel gets two conversations
from realistic provider payloads, signed as the provider signs them and pushed in-process
through the real spine (`do_receive_webhook`, then processing): nothing goes over the network
and no media is fetched. Each channel inbox is seeded once, when its slug is missing.

Deliveries: each demo reply is history, so it is marked sent through the delivery state
machine (`do_record_delivery_status`, the same step a successful send takes,
with its DeliveryChanged event) inside the seeding transaction. The `deliver` tasks that
`do_reply` queues after commit therefore find nothing to do — whether they run eagerly,
on the in-memory broker of this short-lived process (where they simply vanish), or later
on a Redis-backed worker — and nothing goes over the network at seed time. The inbox's
callback_url points at a path of this very server that does not exist, so a reply an
agent writes in the running demo fails delivery at once with a visible
"callback refused the message: HTTP 404" on its ticket.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import Model, Q
from django.utils import timezone

from channels_inbox.actions.delivery import do_record_delivery_status
from channels_inbox.actions.inboxes import do_create_inbox
from channels_inbox.actions.process import do_process_inbound_event
from channels_inbox.actions.receive_email import do_receive_email
from channels_inbox.adapters.api import external_identity
from channels_inbox.adapters.base import IdentityRef, InboundAttachment, InboundMessage, InboundSender
from channels_inbox.models import ChatConversation, ChatVisitor, InboundEvent, Inbox, OutboundDelivery
from customers.actions.resolve import do_resolve_customer
from customers.models import Customer, Identity, IdentityKind, Organization, OrganizationDomain
from customers.normalize import normalize_email, normalize_phone
from helpdesk.actions.agents import do_create_agent
from helpdesk.actions.ingest import do_ingest_message
from helpdesk.actions.replies import do_add_note, do_reply
from helpdesk.actions.ticket_fields import do_change_team
from helpdesk.actions.tickets import do_assign_ticket, do_change_status
from helpdesk.models import (
    Attachment,
    CannedResponse,
    DeliveryStatus,
    Macro,
    Message,
    Role,
    Team,
    Ticket,
    TicketEvent,
    User,
)

DEMO_INBOX_SLUG = "demo-website-api"
DEMO_INBOX_NAME = "Website API"
# A path of this server that does not exist: replies written in the demo fail visibly.
DEMO_CALLBACK_PATH = "/demo/api-callback-not-configured/"
DEMO_ORGANIZATION = "ACME Logistics"
DEMO_ORGANIZATION_DOMAIN = "acme.example"
DEMO_EMAIL_INBOX_SLUG = "demo-support-email"
DEMO_EMAIL_INBOX_NAME = "Support email"
DEMO_EMAIL_ADDRESS = "support@example.com"
DEMO_CHAT_INBOX_SLUG = "demo-website-chat"
DEMO_CHAT_INBOX_NAME = "Website chat"
DEMO_CHAT_PATH = "/widget/v1/demo/"


@dataclass(frozen=True)
class DemoChannel:
    kind: str
    name: str
    slug: str
    # Settings beyond the demo credentials (bench/provider_webhooks.py demo_inbox_values).
    values: tuple[tuple[str, str], ...] = ()


# One inbox per messaging channel (seeded only when the kind's adapter is registered).
DEMO_CHANNELS = (
    DemoChannel("twilio_sms", "SMS", "demo-sms"),
    DemoChannel("twilio_whatsapp", "WhatsApp (Twilio)", "demo-whatsapp-twilio"),
    DemoChannel("whatsapp", "WhatsApp", "demo-whatsapp-cloud"),
    DemoChannel("messenger", "Messenger", "demo-messenger"),
    DemoChannel("instagram", "Instagram", "demo-instagram"),
    DemoChannel("telegram", "Telegram", "demo-telegram"),
    DemoChannel("twilio_voice", "Voice", "demo-voice"),
    # Customers' form posts on the help center; agents answer by email through the demo email inbox.
    DemoChannel(
        "web_form",
        "Web form",
        "demo-web-form",
        (("reply_email_inbox", DEMO_EMAIL_INBOX_SLUG), ("title", "Contact support")),
    ),
)
DEMO_CHANNEL_SLUGS = tuple(c.slug for c in DEMO_CHANNELS)
# The two demo conversations of each webhook channel: (sender index in SENDERS, text).
DEMO_CHANNEL_MESSAGES = (
    (0, "Hi! My order #4471 hasn't arrived yet, can you check?"),
    (1, "Dobrý den, chtěla bych změnit doručovací adresu u objednávky #4480."),
)


# --- staff ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoAgent:
    key: str
    email: str
    name: str
    role: str
    teams: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    # Only the printed demo logins get a password; the others exist as colleagues.
    password: str | None = None
    label: str = ""


AGENTS = (
    DemoAgent("admin", "admin@example.com", "Alex Admin", Role.ADMIN, (), ("en",), "switchboard-admin", "Admin"),
    DemoAgent(
        "ada", "agent@example.com", "Ada Agent", Role.AGENT, ("Support",), ("en", "cs"), "switchboard-agent", "Agent"
    ),
    DemoAgent(
        "light",
        "light@example.com",
        "Lee Light",
        Role.LIGHT_AGENT,
        ("Support",),
        ("en",),
        "switchboard-light",
        "Light agent",
    ),
    DemoAgent("petr", "petr@example.com", "Petr Novák", Role.AGENT, ("Support", "Tier 2"), ("cs", "en")),
    DemoAgent("olga", "olga@example.com", "Olga Ivanova", Role.AGENT, ("Billing",), ("ru", "en")),
    DemoAgent("wei", "wei@example.com", "Wei Chen", Role.AGENT, ("Support", "Billing"), ("zh-Hans", "en")),
)
LOGINS = tuple(a for a in AGENTS if a.password)

# Shared canned responses and macros (for everyone), with the placeholders they support.
DEMO_CANNED = (
    (
        "Greeting",
        "Hi {{ customer.first_name }},\n\nthanks for writing to us about ticket #{{ ticket.number }}.\n",
    ),
    (
        "Closing",
        "If anything else comes up, just reply to this message.\n\nBest regards,\n{{ agent.name }}",
    ),
)
DEMO_MACROS = (
    (
        "Refund issued",
        "Tell the customer the refund is on its way, tag it and wait for their answer.",
        (
            {
                "type": "reply",
                "value": "Hi {{ customer.first_name }},\n\nyour refund for #{{ ticket.number }} is on its way: "
                "expect it within 5 business days.\n\n{{ agent.name }}",
            },
            {"type": "status", "value": "pending"},
            {"type": "add_tags", "value": ["refund"]},
            {"type": "assignee", "value": "me"},
        ),
    ),
    (
        "Escalate to Tier 2",
        "Hand the ticket to Tier 2 with a note and a higher priority.",
        (
            {"type": "note", "value": "Escalated by {{ agent.name }}: needs Tier 2."},
            {"type": "priority", "value": 3},
            {"type": "assignee", "value": "nobody"},
            {"type": "add_tags", "value": ["escalated"]},
            # Last: the ticket may leave the sight of an agent outside Tier 2. A team name here;
            # the seed puts its id.
            {"type": "team", "value": "Tier 2"},
        ),
    ),
)
TEAMS = ("Support", "Billing", "Tier 2")


# --- business calendar, SLA, rules and routing (issue 6) --------------------------------------

DEMO_CALENDAR = "Prague office"
DEMO_CALENDAR_ZONE = "Europe/Prague"
DEMO_CALENDAR_HOURS = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
_CZECH_HOLIDAYS = (
    ("01-01", "New Year's Day (Restoration Day of the Independent Czech State)"),
    ("05-01", "Labour Day"),
    ("05-08", "Liberation Day"),
    ("07-05", "Saints Cyril and Methodius Day"),
    ("07-06", "Jan Hus Day"),
    ("09-28", "Czech Statehood Day"),
    ("10-28", "Independent Czechoslovak State Day"),
    ("11-17", "Struggle for Freedom and Democracy Day"),
    ("12-24", "Christmas Eve"),
    ("12-25", "Christmas Day"),
    ("12-26", "St. Stephen's Day"),
)
# Good Friday and Easter Monday move with Easter (5 April 2026, 28 March 2027).
_EASTER = {2026: ("04-03", "04-06"), 2027: ("03-26", "03-29")}
DEMO_HOLIDAYS = sorted(
    [
        *({"date": f"{year}-{day}", "name": name} for year in (2026, 2027) for day, name in _CZECH_HOLIDAYS),
        *(
            {"date": f"{year}-{day}", "name": name}
            for year, days in _EASTER.items()
            for day, name in zip(days, ("Good Friday", "Easter Monday"), strict=True)
        ),
    ],
    key=lambda h: h["date"],
)


def _targets(first: int, nxt: int, resolution: int, *, business: bool) -> dict[str, dict[str, Any]]:
    return {
        "first_reply": {"minutes": first, "business_hours": business},
        "next_reply": {"minutes": nxt, "business_hours": business},
        "resolution": {"minutes": resolution, "business_hours": business},
    }


# Per priority ("1" low … "4" urgent): minutes to the first reply, each next reply, resolution.
# Urgent counts every hour; the others count the Prague office's business hours.
DEMO_SLA_STANDARD = {
    "4": _targets(30, 60, 8 * 60, business=False),
    "3": _targets(60, 2 * 60, 2 * 8 * 60, business=True),
    "2": _targets(4 * 60, 8 * 60, 5 * 8 * 60, business=True),
    "1": _targets(8 * 60, 16 * 60, 10 * 8 * 60, business=True),
}
DEMO_SLA_VIP = {
    "4": _targets(15, 30, 4 * 60, business=False),
    "3": _targets(30, 60, 8 * 60, business=False),
    "2": _targets(60, 2 * 60, 2 * 8 * 60, business=True),
    "1": _targets(2 * 60, 4 * 60, 3 * 8 * 60, business=True),
}
DEMO_VIP_TAG = "vip"
DEMO_TRIGGER_AFTER_HOURS = "Auto-reply outside business hours"
DEMO_TRIGGER_URGENT = "Urgent tickets to Tier 2"
DEMO_TIME_RULE = "Remind pending after 48 hours"
DEMO_REMINDED_TAG = "reminded"
DEMO_ROUTING_RULE = "Billing questions to Billing"
DEMO_ROUND_ROBIN_TEAM = "Support"


# --- customers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoCustomer:
    key: str
    name: str
    language: str
    email: str
    phone: str


CUSTOMERS = (
    DemoCustomer("jana", "Jana Nováková", "cs", "Jana.Novakova@example.cz", "+420 601 123 456"),
    DemoCustomer("ivan", "Иван Петров", "ru", "ivan.petrov@example.ru", "+7 912 345-67-89"),
    DemoCustomer("fang", "王芳", "zh-Hans", "wang.fang@example.cn", "+86 138 0013 8000"),
    DemoCustomer("emily", "Emily Carter", "en", "emily.carter@example.com", "+1 202 555 0143"),
    DemoCustomer("michael", "Michael Brown", "en", "michael.brown@acme.example", "+44 7700 900123"),
    DemoCustomer("sarah", "Sarah Johnson", "en", "Sarah.Johnson@ACME.example", "+1 415 555 0199"),
    DemoCustomer("tomas", "Tomáš Svoboda", "cs", "tomas.svoboda@acme.example", "+420 777 888 999"),
    DemoCustomer("olga", "Ольга Смирнова", "ru", "olga.smirnova@example.ru", "+7 (921) 000-12-34"),
    DemoCustomer("lina", "李娜", "zh-Hans", "li.na@example.cn", "+86 139 1234 5678"),
    DemoCustomer("dmitri", "Дмитрий Волков", "ru", "d.volkov@example.org", "+7 (915) 765-43-21"),
    DemoCustomer("zhang", "张伟", "zh-Hans", "zhang.wei@example.cn", "+86 150 0000 1234"),
    DemoCustomer("lucie", "Lucie Dvořáková", "cs", "lucie.dvorakova@example.cz", "+420 731 222 333"),
)


# --- conversations --------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One thing that happens on a ticket, `hours` after its conversation started."""

    hours: float
    kind: str  # in, reply, note, status, assign, team
    agent: str = ""
    text: str = ""
    value: str = ""
    attachments: tuple[tuple[str, bytes], ...] = ()


def inbound(hours: float, text: str, *attachments: tuple[str, bytes]) -> Step:
    return Step(hours, "in", text=text, attachments=attachments)


def reply(hours: float, agent: str, text: str) -> Step:
    return Step(hours, "reply", agent=agent, text=text)


def note(hours: float, agent: str, text: str) -> Step:
    return Step(hours, "note", agent=agent, text=text)


def status(hours: float, agent: str, value: str) -> Step:
    return Step(hours, "status", agent=agent, value=value)


def assign(hours: float, agent: str, assignee: str) -> Step:
    return Step(hours, "assign", agent=agent, value=assignee)


def team(hours: float, agent: str, team_name: str) -> Step:
    return Step(hours, "team", agent=agent, value=team_name)


@dataclass(frozen=True)
class Conversation:
    # The API channel's thread_key: a later message with the same key joins the ticket
    # (or, once it is closed, opens a follow-up).
    thread: str
    customer: str
    days_ago: float
    subject: str
    steps: tuple[Step, ...] = field(default_factory=tuple)


_PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
_RECEIVER_LOG = (
    b"2026-03-02T09:14:03Z POST /hooks/switchboard 401 signature mismatch\n"
    b"2026-03-02T09:14:05Z POST /hooks/switchboard 401 signature mismatch\n"
    b"expected=sha256=5f1c... got=sha256=a93e...\n"
)

CONVERSATIONS = (
    Conversation(
        "order-881",
        "jana",
        29.6,
        "Objednávka #881 nedorazila",
        (
            inbound(0, "Dobrý den, moje objednávka #881 stále nedorazila, i když byla odeslána před týdnem."),
            assign(1.5, "ada", "ada"),
            reply(1.6, "ada", "Dobrý den, paní Nováková, omlouváme se. Zásilku jsme u dopravce urgovali a ozveme se."),
            status(1.7, "ada", "pending"),
            inbound(22, "Děkuji, balík dnes dorazil!"),
            reply(23, "ada", "Výborně, děkujeme za trpělivost a přejeme hezký den."),
            status(23.1, "ada", "solved"),
            status(96, "admin", "closed"),
        ),
    ),
    Conversation(
        "login-ivan",
        "ivan",
        28.2,
        "Не могу войти в личный кабинет",
        (
            inbound(
                0, "Здравствуйте! Не могу войти в личный кабинет — пишет «неверный пароль», хотя пароль я уже сбросил."
            ),
            assign(0.8, "admin", "olga"),
            reply(1.2, "olga", "Здравствуйте, Иван! Мы сняли блокировку входа. Попробуйте, пожалуйста, ещё раз."),
            inbound(2.5, "Получилось, спасибо!"),
            status(2.7, "olga", "solved"),
        ),
    ),
    Conversation(
        "invoice-fang",
        "fang",
        27.1,
        "发票抬头需要修改",
        (
            inbound(0, "你好，我上个月的发票抬头写错了，能帮我重新开一张吗？"),
            team(0.5, "admin", "Billing"),
            assign(0.6, "admin", "wei"),
            reply(1, "wei", "您好！请提供正确的公司名称和税号，我们会在三个工作日内重新开具发票。"),
            inbound(3, "公司名称：上海示例贸易有限公司；税号：91310000000000000X。"),
            note(3.5, "wei", "Sent to accounting; waiting for the corrected invoice PDF from them."),
            status(3.6, "wei", "on_hold"),
        ),
    ),
    Conversation(
        "refund-emily",
        "emily",
        26.4,
        "Refund for a duplicate charge",
        (
            inbound(
                0,
                "Hi, I was charged twice for my March subscription. Can you refund one of the charges? "
                "Screenshot of my bank statement attached.",
                ("bank-statement.png", _PNG_1X1),
            ),
            team(0.4, "ada", "Billing"),
            assign(0.9, "admin", "olga"),
            reply(
                1.3,
                "olga",
                "Hi Emily, I can see the duplicate charge and have issued a refund. "
                "It should appear on your statement within 5–7 business days.",
            ),
            status(1.4, "olga", "solved"),
            status(100, "olga", "closed"),
        ),
    ),
    Conversation(
        "ratelimit-acme",
        "michael",
        25.3,
        "API rate limits for the ACME integration",
        (
            inbound(0, "We're hitting HTTP 429 from your API at about 50 requests per second. Is there a higher tier?"),
            team(0.3, "admin", "Tier 2"),
            assign(0.35, "admin", "petr"),
            note(2, "petr", "ACME is on the enterprise plan; asking engineering whether we can raise the limit."),
            reply(6, "petr", "Hi Michael, we've raised your limit to 200 requests per second. Do you still see 429s?"),
            status(6.1, "petr", "pending"),
        ),
    ),
    Conversation(
        "seats-acme",
        "sarah",
        24.0,
        "Three more seats for our team",
        (
            inbound(0, "Could you add three more seats to the ACME Logistics account?"),
            assign(0.2, "ada", "ada"),
            reply(0.7, "ada", "Done — three seats added. The new users will get an invitation email shortly."),
            status(0.8, "ada", "solved"),
        ),
    ),
    Conversation(
        "invoice-acme",
        "tomas",
        23.2,
        "Faktura za únor",
        (
            inbound(0, "Dobrý den, potřebujeme fakturu za únor v PDF pro naši účetní."),
            team(0.5, "admin", "Billing"),
            assign(0.5, "admin", "olga"),
            reply(1, "olga", "Hello Tomáš, the February invoice is now available under Billing → Invoices."),
            inbound(2, "Děkuji, už ji máme."),
            status(2.2, "olga", "solved"),
            status(90, "olga", "closed"),
        ),
    ),
    Conversation(
        "return-olga",
        "olga",
        22.5,
        "Возврат товара",
        (
            inbound(0, "Добрый день! Хочу вернуть наушники — не подошли. Как оформить возврат?"),
            assign(0.4, "admin", "olga"),
            reply(
                0.9,
                "olga",
                "Добрый день! Оформить возврат можно в личном кабинете в разделе «Заказы». "
                "Курьер заберёт товар бесплатно.",
            ),
            status(1, "olga", "pending"),
            inbound(26, "Спасибо, оформила. Когда вернут деньги?"),
            reply(27, "olga", "Деньги вернутся на карту в течение 10 дней после того, как мы получим товар."),
            status(27.1, "olga", "solved"),
        ),
    ),
    Conversation(
        "locked-lina",
        "lina",
        21.3,
        "账号被锁定",
        (
            inbound(0, "我的账号被锁定了，提示登录失败次数过多。"),
            assign(0.3, "wei", "wei"),
            reply(0.5, "wei", "您好，已为您解锁账号。建议您开启两步验证，以保护账号安全。"),
            status(0.6, "wei", "solved"),
            status(80, "wei", "closed"),
        ),
    ),
    Conversation(
        "card-dmitri",
        "dmitri",
        20.2,
        "Ошибка при оплате картой",
        (
            inbound(0, "При оплате картой «Мир» появляется ошибка 502. Пробовал три раза."),
            note(0.5, "light", "Похоже на проблему платёжного шлюза — передаю во второй уровень."),
            team(0.7, "ada", "Tier 2"),
            assign(0.8, "admin", "petr"),
            reply(
                4,
                "petr",
                "Hello Dmitri, our payment provider had an outage this morning; it is fixed now. Could you try again?",
            ),
            status(4.1, "petr", "pending"),
        ),
    ),
    Conversation(
        "export-zhang",
        "zhang",
        18.4,
        "如何导出数据？",
        (
            inbound(0, "请问如何把所有工单导出为 CSV？"),
            reply(2, "ada", "Hi! Go to Reports → Export and you can download every ticket as CSV."),
            inbound(3, "找到了，谢谢！"),
            status(3.2, "ada", "solved"),
        ),
    ),
    Conversation(
        "address-lucie",
        "lucie",
        16.3,
        "Změna doručovací adresy",
        (
            inbound(0, "Dobrý den, můžete změnit adresu doručení u objednávky #1204 na Vinohradská 12, Praha?"),
            assign(0.5, "ada", "ada"),
            reply(0.6, "ada", "Dobrý den, adresu jsme změnili, zásilka půjde na novou adresu."),
            status(0.7, "ada", "solved"),
        ),
    ),
    Conversation(
        "darkmode-emily",
        "emily",
        14.1,
        "Dark mode in the mobile app?",
        (
            inbound(0, "Love the app! Any plans for a dark mode? My eyes would thank you."),
            reply(5, "ada", "Thanks, Emily! Dark mode is on our roadmap — would you like to join the beta?"),
            status(5.1, "ada", "pending"),
        ),
    ),
    Conversation(
        "bill-ivan",
        "ivan",
        12.6,
        "Счёт за апрель",
        (
            inbound(0, "Пришёл счёт на 12 000 ₽, хотя тариф стоит 9 900 ₽. Объясните, пожалуйста."),
            team(0.2, "admin", "Billing"),
            assign(0.3, "admin", "olga"),
            note(1, "olga", "Проверила — подключены три дополнительных пользователя. Уточняю у клиента."),
            reply(
                1.2,
                "olga",
                "Иван, разница — это три дополнительных пользователя, подключённых 5 апреля. "
                "Если они не нужны, мы их отключим и пересчитаем счёт.",
            ),
            status(1.3, "olga", "pending"),
        ),
    ),
    Conversation(
        "shipping-fang",
        "fang",
        10.2,
        "物流信息一直没有更新",
        (
            inbound(0, "我的订单已经五天没有物流更新了，订单号 #2231。"),
            assign(1, "wei", "wei"),
            reply(1.2, "wei", "您好，我们已联系快递公司，预计明天会有更新。给您带来不便，非常抱歉。"),
            inbound(30, "还是没有更新……"),
        ),
    ),
    Conversation(
        "webhook-acme",
        "michael",
        9.4,
        "Webhook signature mismatch",
        (
            inbound(
                0,
                "Our webhook receiver rejects your signatures since yesterday. Did you rotate the secret? "
                "Log attached.",
                ("receiver-log.txt", _RECEIVER_LOG),
            ),
            team(0.2, "admin", "Tier 2"),
            assign(0.3, "admin", "petr"),
            note(0.9, "petr", "Customer verifies against re-serialized JSON instead of the raw body — classic."),
            reply(
                1.1,
                "petr",
                "Hi Michael, the signature covers the raw request body. Please compute the HMAC over the exact "
                "bytes you received, before parsing the JSON.",
            ),
            inbound(3, "That was it, thanks! One more question: can we get the delivery id in a header too?"),
        ),
    ),
    Conversation(
        "sso-acme",
        "sarah",
        7.3,
        "SSO with Okta",
        (
            inbound(0, "Do you support SAML single sign-on with Okta?"),
            reply(1.5, "ada", "Yes — SAML SSO is available on the enterprise plan. Our solutions team will call you."),
            status(1.6, "ada", "pending"),
        ),
    ),
    Conversation(
        "export-acme",
        "tomas",
        6.2,
        "Export kontaktů nefunguje",
        (
            inbound(0, "Export kontaktů do CSV skončí chybou 500. Zkoušeli jsme to ve dvou prohlížečích."),
            note(0.5, "ada", "Reprodukováno na stagingu; předávám do Tier 2."),
            team(0.6, "ada", "Tier 2"),
            assign(0.7, "admin", "petr"),
            reply(2, "petr", "Dobrý den, chybu jsme reprodukovali a opravu nasadíme do pátku."),
        ),
    ),
    Conversation(
        "promo-olga",
        "olga",
        5.1,
        "Промокод не работает",
        (inbound(0, "Промокод SPRING10 не применяется к корзине. Подскажите, что не так?"),),
    ),
    Conversation(
        "vat-lina",
        "lina",
        4.3,
        "能否开具增值税专用发票？",
        (
            inbound(0, "我们公司需要增值税专用发票，可以开吗？"),
            team(1, "admin", "Billing"),
        ),
    ),
    Conversation(
        "sms-dmitri",
        "dmitri",
        3.2,
        "Не приходит SMS с кодом",
        (
            inbound(0, "Уже час жду SMS с кодом подтверждения, но оно так и не пришло."),
            assign(0.3, "ada", "ada"),
            note(0.4, "ada", "Checking the SMS provider logs; asking Olga to answer in Russian."),
            status(0.5, "ada", "open"),
        ),
    ),
    Conversation(
        "docs-zhang",
        "zhang",
        2.1,
        "API 文档中的示例有误",
        (
            inbound(0, "API 文档第 3 节的示例缺少签名头 X-Switchboard-Signature。"),
            reply(1, "wei", "感谢您的反馈！我们已经修正了文档中的示例。"),
            status(1.1, "wei", "solved"),
        ),
    ),
    Conversation(
        "photo-lucie",
        "lucie",
        1.1,
        "Nelze nahrát fotku",
        (inbound(0, "Při nahrávání profilové fotky se zobrazí chyba „Soubor je příliš velký“, i když má jen 2 MB."),),
    ),
    Conversation(
        "reset-emily",
        "emily",
        0.25,
        "Password reset email not arriving",
        (inbound(0, "I requested a password reset twice but no email arrived. The spam folder is empty too."),),
    ),
    # The customer writes again on her closed ticket: a follow-up ticket linked to it.
    Conversation(
        "order-881",
        "jana",
        12.3,
        "",
        (
            inbound(0, "Ještě jeden dotaz k objednávce #881: v balíku chybí návod k obsluze."),
            assign(0.5, "ada", "ada"),
            reply(0.6, "ada", "Dobrý den, návod vám pošleme e-mailem ještě dnes."),
        ),
    ),
)

# --- email ----------------------------------------------------------------------------------


def _encoded_word(text: str, charset: str) -> str:
    return f"=?{charset}?b?{base64.b64encode(text.encode(charset)).decode()}?="


def _plain_mail(
    when: datetime,
    *,
    message_id: str,
    sender: str,
    subject: str,
    text: str,
    charset: str = "utf-8",
    cc: str = "",
    replying_to: str = "",
) -> bytes:
    """A plain-text mail as a mail client writes it (a reply carries In-Reply-To and References)."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = f"Support <{DEMO_EMAIL_ADDRESS}>"
    if cc:
        mail["Cc"] = cc
    mail["Subject"] = subject
    mail["Date"] = format_datetime(when)
    mail["Message-ID"] = f"<{message_id}>"
    if replying_to:
        mail["In-Reply-To"] = f"<{replying_to}>"
        mail["References"] = f"<{replying_to}>"
    mail.set_content(text, charset=charset, cte="quoted-printable" if charset != "utf-8" else None)
    return mail.as_bytes()


def _jana_first(when: datetime) -> bytes:
    return _plain_mail(
        when,
        message_id="demo-cs-1@mail.example.cz",
        sender="Jana Nováková <jana.novakova@example.cz>",
        subject="Reklamace: rozbitý hrnek v zásilce",
        text="Dobrý den,\n\nv dnešní zásilce (objednávka #1377) byl jeden hrnek rozbitý.\n"
        "Můžete mi poslat nový?\n\nDěkuji\nJana Nováková\n",
        charset="iso-8859-2",
    )


def _jana_second(when: datetime) -> bytes:
    first = when - timedelta(hours=7)
    return _plain_mail(
        when,
        message_id="demo-cs-2@mail.example.cz",
        sender="Jana Nováková <jana.novakova@example.cz>",
        subject="Re: Reklamace: rozbitý hrnek v zásilce",
        text="Ještě doplním: rozbitý je ten modrý, ostatní jsou v pořádku.\n\nJana\n\n"
        f"Dne {first:%d. %m. %Y v %H:%M} Jana Nováková <jana.novakova@example.cz> napsal(a):\n"
        "> Dobrý den,\n>\n> v dnešní zásilce (objednávka #1377) byl jeden hrnek rozbitý.\n"
        "> Můžete mi poslat nový?\n>\n> Děkuji\n> Jana Nováková\n",
        charset="iso-8859-2",
        replying_to="demo-cs-1@mail.example.cz",
    )


_INVOICE_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


def _fang_invoice(when: datetime) -> bytes:
    """A GB2312 mail as older Chinese mail clients send it, with a PDF named in GB2312 (RFC 2231)."""
    boundary = "----=_Part_demo_zh_1"
    body = "您好：\n\n附件是贵公司开给我们的三月份发票，但是税号有误，请重新开具。\n\n谢谢！\n王芳\n"
    headers = (
        f"From: {_encoded_word('王芳', 'gb2312')} <wang.fang@example.cn>\r\n"
        f"To: {DEMO_EMAIL_ADDRESS}\r\n"
        f"Subject: {_encoded_word('三月份发票税号错误', 'gb2312')}\r\n"
        f"Date: {format_datetime(when)}\r\n"
        "Message-ID: <demo-zh-1@mail.example.cn>\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
    )
    parts = (
        f"--{boundary}\r\nContent-Type: text/plain; charset=gb2312\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        f"{base64.encodebytes(body.encode('gb2312')).decode()}\r\n"
        f"--{boundary}\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        "Content-Disposition: attachment; filename*=gb2312''%B7%A2%C6%B1-2026-03.pdf\r\n\r\n"
        f"{base64.encodebytes(_INVOICE_PDF).decode()}\r\n"
        f"--{boundary}--\r\n"
    )
    return (headers + parts).encode("ascii")


def _michael_with_cc(when: datetime) -> bytes:
    return _plain_mail(
        when,
        message_id="demo-en-1@mail.acme.example",
        sender="Michael Brown <michael.brown@acme.example>",
        subject="Onboarding call for our new warehouse team",
        text="Hi,\n\nwe're adding a warehouse team in Rotterdam next month. Could we book an onboarding call?\n"
        "I've copied Sarah, who will coordinate on our side.\n\nThanks,\nMichael\n",
        cc="Sarah Johnson <sarah.johnson@acme.example>",
    )


# The demo email inbox is dated this long before the first seed.
EMAIL_INBOX_AGE = timedelta(days=31)


@dataclass(frozen=True)
class DemoMail:
    """A raw mail to the demo email inbox, `days_ago` days back, and what agents did after it."""

    days_ago: float
    build: Callable[[datetime], bytes]
    steps: tuple[Step, ...] = ()


DEMO_MAILS = (
    DemoMail(
        3.4,
        _jana_first,
        (
            assign(0.3, "petr", "petr"),
            reply(0.5, "petr", "Dobrý den, paní Nováková, omlouváme se. Nový hrnek vám pošleme ještě dnes."),
            status(0.6, "petr", "pending"),
        ),
    ),
    # Her reply (quoting the first mail) threads by In-Reply-To and reopens the ticket.
    DemoMail(3.4 - 7 / 24, _jana_second, (note(0.4, "petr", "Modrý hrnek vyměnit, sklad upozorněn."),)),
    DemoMail(2.6, _fang_invoice, (team(0.2, "admin", "Billing"), assign(0.3, "admin", "wei"))),
    DemoMail(
        1.7,
        _michael_with_cc,
        (
            assign(0.5, "ada", "ada"),
            reply(0.8, "ada", "Hi Michael and Sarah, happy to. Would Tuesday at 10:00 CET work for you both?"),
        ),
    ),
)


# Every timestamp the actions stamp with "now", per model; moved to demo time by _backdate.
# --- live chat ------------------------------------------------------------------------------


def _chat_settings() -> dict[str, Any]:
    """The demo chat inbox: embeddable on this server's own site (the demo page) under both the
    names a browser may use for it, continued by email through the demo email inbox."""
    from channels_inbox.chat.origins import normalize_origin

    own = normalize_origin(settings.SITE_URL)
    origins = [own, own.replace("://127.0.0.1", "://localhost"), own.replace("://localhost", "://127.0.0.1")]
    return {
        "allowed_origins": " ".join(dict.fromkeys(origins)),
        "color": "#0f766e",
        "greeting": "Hi! Ask us anything about your order — we usually answer within a minute.",
        "offline_message": "We are out of the office right now. Leave a message and your email: we answer by mail.",
        "office_hours": {
            "tz": "Europe/Prague",
            "days": {day: [["08:00", "20:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
            | {"sat": [["09:00", "13:00"]]},
        },
        "prechat_name": "optional",
        "prechat_email": "required",
        "prechat_message": "Tell us where to reach you if you have to leave before we answer.",
        "proactive": [
            {
                "key": "demo-help",
                "url_contains": DEMO_CHAT_PATH,
                "after_seconds": 15,
                "message": "Looking around? Ask us anything here.",
            }
        ],
        "csat": True,
        "continuity_email_inbox": DEMO_EMAIL_INBOX_SLUG,
    }


@dataclass(frozen=True)
class DemoChat:
    """A finished chat of the demo: a visitor with pre-chat answers, an agent, a rating."""

    key: str
    days_ago: float
    agent: str
    prechat: dict[str, str]
    locale: str
    url_path: str
    title: str
    # (minutes after the start, "visitor" | "agent", text)
    lines: tuple[tuple[float, str, str], ...]
    ended_by: str
    rating: int
    comment: str


DEMO_CHATS = (
    DemoChat(
        key="tomas",
        days_ago=2.3,
        agent="petr",
        prechat={"name": "Tomáš Dvořák", "email": "tomas.dvorak@example.cz"},
        locale="cs",
        url_path="/objednavky/1207",
        title="Objednávka 1207",
        lines=(
            (0, "visitor", "Dobrý den, dá se ještě změnit adresa doručení u objednávky 1207?"),
            (1, "agent", "Dobrý den, ano — zásilka ještě neodešla. Napište mi prosím novou adresu."),
            (2.5, "visitor", "Na Příkopě 12, 110 00 Praha 1."),
            (4, "agent", "Hotovo, adresa je změněná. Balík dorazí ve čtvrtek."),
            (4.5, "visitor", "Děkuji, to je rychlé!"),
        ),
        ended_by="agent",
        rating=5,
        comment="Rychlé a ochotné, díky.",
    ),
    DemoChat(
        key="emily",
        days_ago=0.2,
        agent="ada",
        prechat={"email": "emily.clark@example.com"},
        locale="en",
        url_path="/pricing",
        title="Pricing",
        lines=(
            (0, "visitor", "Hi, do you offer a discount for non-profits?"),
            (0.7, "agent", "Hi! Yes: registered non-profits get 30% off every plan. Shall I send the form?"),
            (2, "visitor", "Yes please, to this address."),
            (3, "agent", "Sent — it takes two minutes to fill in. Anything else?"),
            (3.5, "visitor", "No, that's all. Thanks!"),
        ),
        ended_by="visitor",
        rating=4,
        comment="Helpful, but I had to wait a bit at first.",
    ),
)


_TIMESTAMPS: dict[type[Model], tuple[str, ...]] = {
    Ticket: (
        "created_at",
        "updated_at",
        "last_activity_at",
        "last_customer_message_at",
        "last_agent_message_at",
        "first_reply_at",
        "waiting_since",
        "solved_at",
        "closed_at",
    ),
    Message: ("created_at", "sent_at"),
    TicketEvent: ("created_at",),
    Attachment: ("created_at",),
    OutboundDelivery: ("created_at", "updated_at", "next_attempt_at", "sent_at"),
    Customer: ("created_at", "updated_at", "first_seen_at", "last_seen_at"),
    Identity: ("created_at",),
    Inbox: ("created_at",),
    Organization: ("created_at",),
    InboundEvent: ("received_at", "processed_at", "next_attempt_at"),
    ChatVisitor: ("created_at", "last_seen_at", "verified_at"),
    ChatConversation: ("created_at", "queued_at", "assigned_at", "ended_at", "rated_at"),
}


def _provider_webhooks() -> Any:
    """bench/provider_webhooks.py: the demo's payload builders and signers (shared with the
    replay script and the load test)."""
    import sys

    try:
        from bench import provider_webhooks
    except ImportError:  # run from elsewhere than the repository root
        sys.path.insert(0, str(settings.BASE_DIR))
        from bench import provider_webhooks
    return provider_webhooks


def _backdate(since: datetime, when: datetime) -> None:
    """Move every timestamp written at or after `since` (real time) to `when` (demo time).

    The one place the seed writes models directly: a queryset update() of timestamps
    only, after the actions have written everything else (the actions stamp "now"). All
    demo times lie before the seed started, so rows of earlier steps are never moved again.
    """
    for model, names in _TIMESTAMPS.items():
        touched = Q()
        for name in names:
            touched |= Q(**{f"{name}__gte": since})
        for row in model._default_manager.filter(touched).values("pk", *names):
            moved = {name: when for name in names if row[name] is not None and row[name] >= since}
            model._default_manager.filter(pk=row["pk"]).update(**moved)


class Command(BaseCommand):
    help = "Create demo data (idempotent) and print the demo logins."

    def handle(self, *args: Any, **options: Any) -> None:
        users = self._ensure_staff()
        counts: dict[str, int] = {}
        with transaction.atomic():
            if not Inbox.objects.filter(slug=DEMO_INBOX_SLUG).exists():
                counts = self._seed(users)
            mails = self._seed_email(users)
            chats = self._seed_chat(users)
            channels = self._seed_channels(users)
            shortcuts = self._seed_shortcuts(users)
            # The change processor runs after commit: the calendar and SLA policies made now are
            # there when it handles the demo tickets (here, at once), so they get their clocks;
            # the rules and routing come after, for new work only, not the seeded history.
            automation = self._seed_sla(users)
            self._process_demo_changes()
            automation += self._seed_rules(users)
        if automation:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo calendar, SLA policies, rules and routing: {automation} created "
                    f"(calendar {DEMO_CALENDAR!r}, policies 'VIP' and 'Standard')."
                )
            )
        if shortcuts:
            self.stdout.write(self.style.SUCCESS(f"Demo canned responses and macros: {shortcuts} created."))
        if counts:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo data created: {counts['tickets']} tickets, {counts['customers']} customers, "
                    f"{counts['messages']} messages."
                )
            )
        if mails:
            self.stdout.write(self.style.SUCCESS(f"Demo email: {mails} mails received on {DEMO_EMAIL_ADDRESS}."))
        if chats:
            self.stdout.write(self.style.SUCCESS(f"Demo chat: inbox {DEMO_CHAT_INBOX_NAME!r} with {chats} chats."))
        if channels:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo channels: {len(channels)} inboxes ({', '.join(channels)}) with "
                    f"{sum(channels.values())} webhooks received."
                )
            )
        if not counts and not mails and not chats and not automation and not channels:
            self.stdout.write(f"Demo data already present (inbox {DEMO_INBOX_SLUG!r}); nothing new created.")
        self._print_logins()

    # --- staff ----------------------------------------------------------------------------
    def _ensure_staff(self) -> dict[str, User]:
        """The demo staff, created or updated in place (the printed passwords always work)."""
        return {
            agent.key: do_create_agent(
                email=agent.email,
                name=agent.name,
                password=agent.password,  # None keeps an existing password (or makes it unusable)
                role=agent.role,
                teams=list(agent.teams),
                languages=list(agent.languages),
            )
            for agent in AGENTS
        }

    # --- canned responses and macros -----------------------------------------------------
    def _seed_shortcuts(self, users: dict[str, User]) -> int:
        """The demo's shared canned responses and macros, each created once (by title / name)."""
        from helpdesk.actions.canned import do_save_canned_response
        from helpdesk.actions.macros import do_save_macro

        admin = users["admin"]
        created = 0
        for title, body in DEMO_CANNED:
            if not CannedResponse.objects.filter(title=title, team=None, owner=None).exists():
                do_save_canned_response(None, title=title, body=body, actor=admin)
                created += 1
        team_ids = dict(Team.objects.values_list("name", "pk"))
        for name, description, steps in DEMO_MACROS:
            if not Macro.objects.filter(name=name, team=None, owner=None).exists():
                actions = [
                    {**step, "value": team_ids[str(step["value"])]} if step["type"] == "team" else dict(step)
                    for step in steps
                ]
                do_save_macro(None, name=name, description=description, actions=actions, actor=admin)
                created += 1
        return created

    # --- calendar, SLA policies, rules, routing --------------------------------------------
    def _seed_sla(self, users: dict[str, User]) -> int:
        """The "Prague office" calendar (the default when there is none) and the SLA policies
        "VIP" (first) and "Standard" (every other ticket), each created once, by name."""
        from helpdesk.actions.calendars import do_save_calendar
        from helpdesk.actions.sla import do_move_sla_policy, do_save_sla_policy
        from helpdesk.models import BusinessCalendar, SlaPolicy

        admin = users["admin"]
        created = 0
        calendar = BusinessCalendar.objects.filter(name=DEMO_CALENDAR).first()
        if calendar is None:
            calendar = do_save_calendar(
                None,
                name=DEMO_CALENDAR,
                time_zone=DEMO_CALENDAR_ZONE,
                hours=DEMO_CALENDAR_HOURS,
                holidays=DEMO_HOLIDAYS,
                is_default=not BusinessCalendar.objects.filter(is_default=True).exists(),
                actor=admin,
            )
            created += 1
        escalate = [
            {
                "on": "breach",
                "metric": "any",
                "actions": [{"type": "notify", "value": {"to": "team", "text": "An SLA target was missed."}}],
            }
        ]
        vip = SlaPolicy.objects.filter(name="VIP").first()
        if vip is None:
            any_of: list[dict[str, Any]] = [{"field": "tags", "op": "includes_any", "value": [DEMO_VIP_TAG]}]
            organization = Organization.objects.filter(name=DEMO_ORGANIZATION).first()
            if organization is not None:
                any_of.append({"field": "customer.organization", "op": "is", "value": organization.pk})
            vip = do_save_sla_policy(
                None,
                name="VIP",
                description=f"Tagged “{DEMO_VIP_TAG}” or from {DEMO_ORGANIZATION}: faster answers, around the clock "
                "for high and urgent.",
                conditions={"any": any_of},
                calendar=calendar,
                targets=DEMO_SLA_VIP,
                warn_before_minutes=10,
                escalations=[
                    *escalate,
                    {"on": "warning", "metric": "any", "actions": [{"type": "priority", "value": 4}]},
                ],
                is_active=True,
                actor=admin,
            )
            created += 1
        if not SlaPolicy.objects.filter(name="Standard").exists():
            do_save_sla_policy(
                None,
                name="Standard",
                description="Every other ticket, in the Prague office's business hours (urgent: every hour).",
                conditions={},
                calendar=calendar,
                targets=DEMO_SLA_STANDARD,
                warn_before_minutes=30,
                escalations=escalate,
                is_active=True,
                actor=admin,
            )
            created += 1
        if SlaPolicy.objects.filter(position__lt=vip.position).exists():
            do_move_sla_policy(vip, position=0, actor=admin)
        return created

    def _process_demo_changes(self) -> None:
        """Run the change processor now on every demo ticket it has not seen (SLA clocks from
        the seeded history), before the rules exist: they are for new work, not for the demo's
        month of history (no auto-replies to old tickets when the server first sweeps)."""
        from django.db.models import F

        from helpdesk.actions.sla import replaying_history
        from helpdesk.changes import process_ticket_changes

        pending = Ticket.objects.filter(
            inbox__slug__in=[DEMO_INBOX_SLUG, DEMO_EMAIL_INBOX_SLUG, DEMO_CHAT_INBOX_SLUG, *DEMO_CHANNEL_SLUGS],
            changes_seq__lt=F("last_event_seq"),
        )
        # The targets the month of history missed are recorded as breaches, without notifying
        # anyone or running the policies' escalations on them.
        with replaying_history():
            for ticket_id in pending.order_by("id").values_list("id", flat=True):
                process_ticket_changes(ticket_id)

    def _seed_rules(self, users: dict[str, User]) -> int:
        """The demo triggers, the time rule, the routing rule (with round robin in Support), each
        created once, by name."""
        from helpdesk.actions.routing import do_save_routing_rule, do_set_team_routing
        from helpdesk.actions.rules import do_save_rule
        from helpdesk.models import BusinessCalendar, RoutingMode, RoutingRule, Rule, RuleKind

        admin = users["admin"]
        teams = {t.name: t for t in Team.objects.filter(name__in=TEAMS)}
        calendar = BusinessCalendar.objects.filter(name=DEMO_CALENDAR).first()
        created = 0

        def rule(kind: str, name: str, **fields: Any) -> None:
            nonlocal created
            if not Rule.objects.filter(kind=kind, name=name).exists():
                do_save_rule(None, kind=kind, name=name, actor=admin, **fields)
                created += 1

        closed = {"field": "within_business_hours", "op": "is", "value": False}
        if calendar is not None:
            closed["calendar"] = calendar.pk
        rule(
            RuleKind.TRIGGER,
            DEMO_TRIGGER_AFTER_HOURS,
            description="A new ticket outside the Prague office's hours is told when to expect an answer.",
            events=["created"],
            conditions={"all": [closed, {"field": "channel", "op": "is_not", "value": "chat"}]},
            actions=[
                {
                    "type": "reply",
                    "value": "Hi {{ customer.first_name }},\n\nthanks for your message (ticket #{{ ticket.number }}). "
                    "Our office is open Monday to Friday, 9:00–17:00 Prague time; we will answer you on the "
                    "next business day.\n\nSwitchboard support",
                }
            ],
        )
        if "Tier 2" in teams:
            tier2 = teams["Tier 2"].pk
            rule(
                RuleKind.TRIGGER,
                DEMO_TRIGGER_URGENT,
                description="Urgent tickets go to Tier 2 (when created urgent or raised to urgent).",
                events=["created", "priority_changed"],
                conditions={
                    "all": [
                        {"field": "priority", "op": "is", "value": 4},
                        {"field": "team", "op": "is_not", "value": tier2},
                    ]
                },
                actions=[{"type": "team", "value": tier2}, {"type": "add_tags", "value": ["urgent"]}],
            )
        rule(
            RuleKind.TIME,
            DEMO_TIME_RULE,
            description="Ask the customer once when a ticket has waited for them for two days "
            f"(tag “{DEMO_REMINDED_TAG}”).",
            conditions={
                "all": [
                    {"field": "status", "op": "is", "value": "pending"},
                    {"field": "status_changed", "op": "greater_than", "value": 47},
                    {"field": "tags", "op": "includes_none", "value": [DEMO_REMINDED_TAG]},
                ]
            },
            actions=[
                {
                    "type": "reply",
                    "value": "Hi {{ customer.first_name }},\n\njust checking in on ticket #{{ ticket.number }}: "
                    "do you still need our help? Reply to this message and we will pick it up.",
                },
                {"type": "add_tags", "value": [DEMO_REMINDED_TAG]},
            ],
        )
        if "Billing" in teams and not RoutingRule.objects.filter(name=DEMO_ROUTING_RULE).exists():
            do_save_routing_rule(
                None,
                name=DEMO_ROUTING_RULE,
                inbox=None,
                conditions={
                    "any": [
                        {"field": "subject", "op": "contains", "value": word}
                        for word in ("invoice", "refund", "faktura", "счёт")
                    ]
                },
                team=teams["Billing"],
                is_active=True,
                actor=admin,
            )
            created += 1
            # With the routing rule, once: an admin who switches Support back to manual keeps it so.
            support = teams.get(DEMO_ROUND_ROBIN_TEAM)
            if support is not None and support.routing == RoutingMode.MANUAL:
                do_set_team_routing(
                    support,
                    routing=RoutingMode.ROUND_ROBIN,
                    reassign_offline=True,
                    skills_timeout_minutes=None,
                    actor=admin,
                )
        return created

    # --- content ----------------------------------------------------------------------------
    def _seed(self, users: dict[str, User]) -> dict[str, int]:
        now = timezone.now()
        teams = {t.name: t for t in Team.objects.filter(name__in=TEAMS)}

        # There is no organization action yet (customers/actions has only resolve): the
        # organization must exist before its customers, so they join it by email domain.
        organization = Organization.objects.create(name=DEMO_ORGANIZATION, attributes={"plan": "enterprise"})
        OrganizationDomain.objects.create(organization=organization, domain=DEMO_ORGANIZATION_DOMAIN)
        inbox, _secrets = do_create_inbox(
            kind="api",
            name=DEMO_INBOX_NAME,
            slug=DEMO_INBOX_SLUG,
            values={"callback_url": settings.SITE_URL + DEMO_CALLBACK_PATH},
            team=teams["Support"],
        )
        _backdate(now, now - timedelta(days=31))

        customers = {c.key: c for c in CUSTOMERS}
        steps = sorted(
            (
                (now - timedelta(days=conv.days_ago) + timedelta(hours=step.hours), n, i, conv, step)
                for n, conv in enumerate(CONVERSATIONS)
                for i, step in enumerate(conv.steps)
            ),
            key=lambda item: item[:3],
        )
        ticket_ids: dict[str, int] = {}
        for when, n, i, conv, step in steps:
            since = timezone.now()
            if step.kind == "in":
                ticket_ids[conv.thread] = self._inbound(inbox, customers[conv.customer], conv, n, i, step, when)
            else:
                ticket = Ticket.objects.select_related("customer", "inbox").get(pk=ticket_ids[conv.thread])
                self._agent_step(ticket, step, users, teams, when)
            _backdate(since, when)
        return {
            "tickets": Ticket.objects.filter(inbox=inbox).count(),
            "customers": Customer.objects.filter(tickets__inbox=inbox).distinct().count(),
            "messages": Message.objects.filter(ticket__inbox=inbox).count(),
        }

    def _inbound(
        self, inbox: Inbox, who: DemoCustomer, conv: Conversation, n: int, i: int, step: Step, when: datetime
    ) -> int:
        sender = InboundSender(
            identities=[
                IdentityRef(IdentityKind.EXTERNAL, external_identity(inbox, f"demo-{who.key}")),
                IdentityRef(IdentityKind.EMAIL, normalize_email(who.email)),
                IdentityRef(IdentityKind.PHONE, normalize_phone(who.phone)),
            ],
            name=who.name,
            language=who.language,
        )
        message = InboundMessage(
            external_id=f"demo-{n:02d}-{i:02d}",
            sender=sender,
            text=step.text,
            subject=conv.subject if i == 0 else "",
            thread_key=conv.thread,
            attachments=[InboundAttachment(name, content) for name, content in step.attachments],
            sent_at=when,
        )
        customer = do_resolve_customer(sender, seen_at=when)
        ticket = do_ingest_message(inbox=inbox, inbound=message, customer=customer).ticket
        assert ticket is not None, "demo messages are never automatic"
        return ticket.pk

    def _seed_email(self, users: dict[str, User]) -> int:
        """The demo email inbox and its mails, through the real inbound pipeline; returns how
        many mails were new (0 on a rerun: each mail's Message-ID is its dedupe key)."""
        now = timezone.now()
        teams = {t.name: t for t in Team.objects.filter(name__in=TEAMS)}
        inbox = Inbox.objects.filter(slug=DEMO_EMAIL_INBOX_SLUG).first()
        if inbox is not None:
            # A rerun rebuilds the mails at the first run's times (the inbox was backdated by
            # EMAIL_INBOX_AGE from then): the same bytes, so the same dedupe keys, so nothing new.
            now = inbox.created_at + EMAIL_INBOX_AGE
        else:
            inbox, _secrets = do_create_inbox(
                kind="email",
                name=DEMO_EMAIL_INBOX_NAME,
                slug=DEMO_EMAIL_INBOX_SLUG,
                values={"address": DEMO_EMAIL_ADDRESS, "auto_ack": False},
                team=teams["Support"],
            )
            _backdate(now, now - EMAIL_INBOX_AGE)
        new = 0
        for demo in sorted(DEMO_MAILS, key=lambda d: -d.days_ago):
            when = now - timedelta(days=demo.days_ago)
            since = timezone.now()
            receipt = do_receive_email(inbox, demo.build(when), source="seed_demo")
            if not receipt.stored:
                continue
            new += 1
            # Processed here, not left to the task queued after commit (which then finds it done).
            do_process_inbound_event(receipt.event_id, batch_size=1)
            _backdate(since, when)
            message = InboundEvent.objects.get(pk=receipt.event_id).message
            assert message is not None, "demo mails always land on a ticket"
            for step in demo.steps:
                since = timezone.now()
                ticket = Ticket.objects.select_related("customer", "inbox").get(pk=message.ticket_id)
                self._agent_step(ticket, step, users, teams, when + timedelta(hours=step.hours))
                _backdate(since, when + timedelta(hours=step.hours))
        return new

    def _seed_chat(self, users: dict[str, User]) -> int:
        """The demo chat inbox and its finished chats, through the widget's own write path
        (`do_start_chat_session`, `do_receive_chat_message`, the spine inline); returns how many
        chats were created (0 on a rerun, or when the inbox exists already)."""
        from channels_inbox.actions.chat import do_rate_chat, do_receive_chat_message, do_start_chat_session
        from channels_inbox.chat.origins import own_origin
        from helpdesk.actions.chats import do_end_chat, do_transfer_chat

        if Inbox.objects.filter(slug=DEMO_CHAT_INBOX_SLUG).exists():
            return 0
        now = timezone.now()
        teams = {t.name: t for t in Team.objects.filter(name__in=TEAMS)}
        inbox, _secrets = do_create_inbox(
            kind="chat",
            name=DEMO_CHAT_INBOX_NAME,
            slug=DEMO_CHAT_INBOX_SLUG,
            values=_chat_settings(),
            team=teams["Support"],
        )
        _backdate(now, now - timedelta(days=31))
        for demo in sorted(DEMO_CHATS, key=lambda d: -d.days_ago):
            start = now - timedelta(days=demo.days_ago)
            since = timezone.now()
            visitor = do_start_chat_session(
                inbox,
                visitor=None,
                site=own_origin(),
                url=settings.SITE_URL + demo.url_path,
                title=demo.title,
                locale=demo.locale,
                user_agent="Mozilla/5.0 (demo)",
            )
            _backdate(since, start)
            conversation: ChatConversation | None = None
            agent = users[demo.agent]
            for n, (minutes, who, text) in enumerate(demo.lines):
                when = start + timedelta(minutes=minutes)
                since = timezone.now()
                if who == "visitor":
                    receipt = do_receive_chat_message(
                        visitor,
                        conversation=conversation.public_id.hex if conversation else None,
                        client_msg_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"switchboard-demo-chat:{demo.key}:{n}")),
                        text=text,
                        prechat=demo.prechat if conversation is None else None,
                    )
                    assert receipt.conversation is not None, "a demo chat message always opens a chat"
                    if conversation is None:
                        # The agent takes the chat (as routing does for an available agent).
                        do_transfer_chat(receipt.conversation, actor=agent, to_agent=agent)
                    conversation = receipt.conversation
                else:
                    assert conversation is not None, "a demo chat starts with the visitor"
                    ticket = Ticket.objects.select_related("customer", "inbox").get(pk=conversation.ticket_id)
                    self._agent_step(ticket, Step(0, "reply", agent=demo.agent, text=text), users, teams, when)
                _backdate(since, when)
            assert conversation is not None
            when = start + timedelta(minutes=demo.lines[-1][0] + 1)
            since = timezone.now()
            do_end_chat(conversation, actor=agent if demo.ended_by == "agent" else None, by=demo.ended_by)
            do_rate_chat(conversation, rating=demo.rating, comment=demo.comment)
            _backdate(since, when)
        return len(DEMO_CHATS)

    def _seed_channels(self, users: dict[str, User]) -> dict[str, int]:
        """One inbox per registered messaging channel, each with two conversations made from
        signed provider webhooks through the real spine; returns {inbox name: webhooks stored}
        for the inboxes created now (empty on a rerun)."""
        from channels_inbox.actions.receive import do_receive_webhook
        from channels_inbox.adapters import adapter_kinds, get_adapter

        pw = _provider_webhooks()
        kinds = set(adapter_kinds())
        teams = {t.name: t for t in Team.objects.filter(name__in=TEAMS)}
        created: dict[str, int] = {}
        for channel in DEMO_CHANNELS:
            if channel.kind not in kinds or Inbox.objects.filter(slug=channel.slug).exists():
                continue
            now = timezone.now()
            inbox, _secrets = do_create_inbox(
                kind=channel.kind,
                name=channel.name,
                slug=channel.slug,
                values={**pw.demo_inbox_values(channel.kind, get_adapter(channel.kind)), **dict(channel.values)},
                team=teams["Support"],
            )
            _backdate(now, now - timedelta(days=3))
            stored = 0
            if channel.kind in pw.BUILDERS:
                for n, (who, text) in enumerate(DEMO_CHANNEL_MESSAGES):
                    when = now - timedelta(days=2 - n, hours=3)
                    since = timezone.now()
                    hook = pw.build_message(inbox, settings.SITE_URL, sender=pw.SENDERS[who], text=text)
                    stored += do_receive_webhook(inbox, hook.webhook_request()).stored
                    # Processed here, not left to the task queued after commit (which then finds it done).
                    pending = InboundEvent.objects.filter(inbox=inbox, processed_at__isnull=True).order_by("pk")
                    for event_id in pending.values_list("pk", flat=True):
                        do_process_inbound_event(event_id, batch_size=1)
                    _backdate(since, when)
            created[channel.name] = stored
        return created

    def _agent_step(
        self, ticket: Ticket, step: Step, users: dict[str, User], teams: dict[str, Team], when: datetime
    ) -> None:
        actor = users[step.agent]
        if step.kind == "reply":
            message = do_reply(ticket, actor=actor, text=step.text)
            # Demo history: the reply went out back then. Marked sent by the delivery state
            # machine inside this transaction, so the deliver task queued after commit finds
            # nothing to send (see the module docstring).
            delivery_id = OutboundDelivery.objects.get(message=message).pk
            do_record_delivery_status(delivery_id, DeliveryStatus.SENT, at=when)
        elif step.kind == "note":
            do_add_note(ticket, actor=actor, text=step.text)
        elif step.kind == "status":
            do_change_status(ticket, status=step.value, actor=actor)
        elif step.kind == "assign":
            do_assign_ticket(ticket, assignee=users[step.value], actor=actor)
        elif step.kind == "team":
            do_change_team(ticket, team=teams[step.value], actor=actor)
        else:  # pragma: no cover - a typo in the scripts above
            raise ValueError(f"unknown demo step {step.kind!r}")

    # --- output -----------------------------------------------------------------------------
    def _print_logins(self) -> None:
        width = max(len(a.label) for a in LOGINS) + 1
        lines = ["", "Switchboard demo", f"  {'Desk:':<{width}} {settings.SITE_URL}/desk/"]
        for agent in LOGINS:
            where = f"teams {', '.join(agent.teams)}" if agent.teams else "sees every ticket"
            if agent.role == Role.LIGHT_AGENT:
                where += "; internal notes only, no replies"
            lines.append(f"  {agent.label + ':':<{width}} {agent.email} / {agent.password}   ({where})")
        lines += [
            f"  Demo inbox: {DEMO_INBOX_NAME} (API channel). Its callback_url "
            f"{settings.SITE_URL}{DEMO_CALLBACK_PATH} does not exist,",
            "  so a reply you send in the demo fails delivery with a visible error on the ticket.",
            f"  Demo email inbox: {DEMO_EMAIL_INBOX_NAME} <{DEMO_EMAIL_ADDRESS}>; its replies go out through EMAIL_URL"
            " (the console by default).",
            f"  Pipe more mail in with: manage.py ingest_email --inbox {DEMO_EMAIL_INBOX_SLUG} - < message.eml",
        ]
        chat = Inbox.objects.filter(slug=DEMO_CHAT_INBOX_SLUG).first()
        if chat is not None:
            from channels_inbox.views.widget_demo import embed_snippet

            lines += [
                f"  Live chat: try the widget on {settings.SITE_URL}{DEMO_CHAT_PATH} and answer it on the desk"
                ' (switch on "available for chat" in the top bar).',
                f"  Demo chat inbox: {DEMO_CHAT_INBOX_NAME}; embed it on a website (its origin in allowed_origins):",
                f"    {embed_snippet(chat)}",
            ]
        channels = list(Inbox.objects.filter(slug__in=DEMO_CHANNEL_SLUGS).order_by("pk"))
        if channels:
            lines.append("  Demo channel inboxes (fixed demo credentials: DEMO_VALUES in bench/provider_webhooks.py):")
            lines += [
                f"    {c.name:<18} {settings.SITE_URL}/webhooks/{c.kind}/{c.uuid}/"
                if c.adapter.accepts_webhooks
                else f"    {c.name:<18} (no provider webhook: see docs/channels.md)"
                for c in channels
            ]
            lines.append(
                f"  Replay a conversation per channel into this server: .venv/bin/python bench/replay_webhooks.py"
                f" --url {settings.SITE_URL}"
            )
        lines.append("")
        self.stdout.write("\n".join(lines))
