"""ASGI entry point: websockets under /ws/ (and, in the embedded mode, HTTP too).

Two websocket stacks: the desk's (`/ws/desk/`: session auth, origin must be one of
ALLOWED_HOSTS) and the chat widget's (`/ws/widget/`: no cookies; the consumer checks the
Origin against the inbox's allowed websites and authenticates the visitor's token in the
first frame).
"""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk.settings")

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from channels_inbox.routing import widget_urlpatterns  # noqa: E402
from helpdesk.routing import websocket_urlpatterns  # noqa: E402

desk_websockets = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
widget_websockets = URLRouter(widget_urlpatterns)


async def websockets(scope: dict[str, Any], receive: Any, send: Any) -> Any:
    app = widget_websockets if scope.get("path", "").startswith("/ws/widget/") else desk_websockets
    return await app(scope, receive, send)


application = ProtocolTypeRouter({"http": django_asgi_app, "websocket": websockets})
