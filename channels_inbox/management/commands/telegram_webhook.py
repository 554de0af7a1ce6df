"""`manage.py telegram_webhook <inbox-slug> [--info]` — connect a Telegram bot's webhook.

Without --info: setWebhook to this inbox's URL with its secret token (what the settings
screen's "Connect webhook" button does). With --info: getWebhookInfo (the URL Telegram
calls, pending updates, its last error). The bot token is never printed.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_inbox.actions.telegram import do_set_telegram_webhook, telegram_webhook_info
from channels_inbox.adapters.base import DeliveryError
from channels_inbox.models import Inbox


class Command(BaseCommand):
    help = "Connect a Telegram inbox's bot webhook (setWebhook), or show its state (--info)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the Telegram inbox's slug")
        parser.add_argument("--info", action="store_true", help="show getWebhookInfo instead of setting the webhook")

    def handle(self, *args: Any, **options: Any) -> None:
        inbox = Inbox.objects.filter(slug=options["slug"], kind="telegram").first()
        if inbox is None:
            raise CommandError(f"no Telegram inbox with slug {options['slug']!r}")
        try:
            if options["info"]:
                info = telegram_webhook_info(inbox)
                self.stdout.write(f"url: {info['url'] or '(none)'}")
                self.stdout.write(f"connected to this inbox: {'yes' if info['connected'] else 'no'}")
                self.stdout.write(f"pending updates: {info['pending_update_count']}")
                if info["last_error_message"]:
                    at = info["last_error_at"].isoformat() if info["last_error_at"] else "?"
                    self.stdout.write(f"last error ({at}): {info['last_error_message']}")
                return
            self.stdout.write(do_set_telegram_webhook(inbox))
        except DeliveryError as exc:
            raise CommandError(str(exc)) from None
