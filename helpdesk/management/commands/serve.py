"""`manage.py serve`: the embedded server — HTTP, websockets, worker and beat in one process."""

from __future__ import annotations

import warnings
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Serve Switchboard from one ASGI process (uvicorn). Without REDIS_URL a Celery worker and "
        "beat run inside it; with REDIS_URL run `celery worker` and `celery beat` beside it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="do not start the in-process Celery worker/beat")

    def handle(self, *args: Any, **options: Any) -> None:
        import uvicorn

        # WhiteNoise streams static files from a file iterator; under ASGI Django wraps it
        # and warns on every file. Harmless here (the embedded mode's own static serving).
        warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")

        from helpdesk.celery import app
        from helpdesk.embedded import EmbeddedCelery

        embedded = None
        if settings.EMBEDDED and not options["no_worker"]:
            embedded = EmbeddedCelery(app)
            embedded.start()
        config = uvicorn.Config(
            "helpdesk.asgi:application",
            host=options["host"],
            port=options["port"],
            lifespan="off",
            # ~40 KB less memory per idle websocket (floors.md §8.10).
            ws_per_message_deflate=False,
            log_level="warning",
        )
        server = uvicorn.Server(config)
        self.stdout.write(f"Switchboard is serving on http://{options['host']}:{options['port']}/desk/  (Ctrl-C stops)")
        try:
            server.run()
        except KeyboardInterrupt:
            pass  # uvicorn re-raises the Ctrl-C it handled; the shutdown below is the answer
        finally:
            if embedded is not None:
                embedded.stop()
        self.stdout.write("Switchboard stopped.")
