"""The chat widget's HTTP API and pages under /widget/v1/ (docs/chat.md).

Thin: each view parses its input, finds the inbox and the visitor (by the bearer token),
checks the origin, calls one action and serializes with channels_inbox/chat/frames.py.
Errors are JSON `{"error": "…"}`: 400 malformed, 401 bad token, 403 origin or identity,
404 not found (also another visitor's conversation), 409 wrong state, 413 too large,
429 rate limited. No cookies: csrf-exempt, token auth; CORS only on /config.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt

from channels_inbox.actions import chat as actions
from channels_inbox.actions.chat import VisitorAuth
from channels_inbox.adapters.chat import (
    clean_proactive,
    inbox_color,
    inbox_position,
    is_online,
    office_hours_text,
    prechat_mode,
)
from channels_inbox.chat import frames, limits, presence
from channels_inbox.chat.identity import IdentityRefused
from channels_inbox.chat.origins import OriginRefused, check_origin, frame_ancestors, is_allowed, normalize_origin
from channels_inbox.chat.tokens import (
    BadToken,
    read_conversation_link,
    read_file_token,
    scoped_visitor_token,
    visitor_token,
)
from channels_inbox.models import ChatConversation, ChatVisitor, Inbox
from helpdesk.composer import BoundedUploadHandler
from helpdesk.models import Attachment, Direction

# Types a browser may show from a chat file link; everything else downloads as bytes.
_SHOWN_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
_LANG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}$")
# Multipart overhead allowed above CHAT_UPLOAD_MAX_BYTES before the body is refused unread.
_MULTIPART_SLACK = 64 * 1024


class WidgetError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _harden(response: HttpResponseBase) -> HttpResponseBase:
    response["X-Content-Type-Options"] = "nosniff"
    response.setdefault("Cache-Control", "no-store")
    return response


def error(status: int, message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    _harden(response)
    return response


def _json(data: Any, status: int = 200) -> JsonResponse:
    response = JsonResponse(data, status=status, safe=False, json_dumps_params={"ensure_ascii": False})
    _harden(response)
    return response


def _no_content() -> HttpResponse:
    response = HttpResponse(status=204)
    _harden(response)
    return response


_ERRORS: tuple[tuple[type[BaseException], int], ...] = (
    (actions.ChatInputError, 400),
    (actions.ChatNotFound, 404),
    (actions.ChatConflict, 409),
    (actions.ChatRateLimited, 429),
    (actions.UploadTooLarge, 413),
    (IdentityRefused, 403),
    (OriginRefused, 403),
    (BadToken, 401),
    (PermissionDenied, 403),
)


def _inbox(inbox_token: str) -> Inbox:
    inbox = Inbox.objects.filter(public_token=inbox_token[:64], kind="chat", is_active=True).first()
    if inbox is None:
        raise WidgetError(404, "no such chat")
    return inbox


def read_json(request: HttpRequest) -> dict[str, Any]:
    """The body as a JSON object, or WidgetError 400/413: capped, strict UTF-8, no deep nesting."""
    limit = settings.CHAT_JSON_MAX_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise WidgetError(400, "bad Content-Length") from None
    if declared > limit:
        raise WidgetError(413, f"the body is over {limit} bytes")
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise WidgetError(413, f"the body is over {limit} bytes")
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise WidgetError(400, "the body is not UTF-8") from None
    except (ValueError, RecursionError):  # RecursionError: thousands of nested brackets
        raise WidgetError(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise WidgetError(400, "the body must be a JSON object")
    return data


def _bearer(request: HttpRequest) -> str:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _visitor(request: HttpRequest, inbox: Inbox, token: str | None = None) -> VisitorAuth:
    """The token's visitor of this inbox and its scope (401), from an origin the inbox allows
    now (403). A hosted-page token is limited to one conversation (`only_conversation_id`)."""
    auth = actions.authenticate_visitor(inbox, token if token is not None else _bearer(request))
    check_origin(inbox, request.META.get("HTTP_ORIGIN"), site_origin=auth.visitor.site_origin)
    return auth


def api(
    method: str, *, auth: bool = True
) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """One widget API endpoint: method, per-address limit, inbox, visitor, errors as JSON."""

    def decorate(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @csrf_exempt
        @wraps(view)
        def wrapped(request: HttpRequest, inbox_token: str, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method != method:
                response = error(405, f"use {method}")
                response["Allow"] = method
                return response
            if not limits.allow_ip_request(limits.client_ip(request)):
                return error(429, "too many requests from your address; wait a minute")
            try:
                inbox = _inbox(inbox_token)
                if auth:
                    return view(request, inbox, _visitor(request, inbox), *args, **kwargs)
                return view(request, inbox, *args, **kwargs)
            except WidgetError as exc:
                return error(exc.status, exc.message)
            except RequestDataTooBig:
                return error(413, "the body is too large")
            except Exception as exc:
                for kind, status in _ERRORS:
                    if isinstance(exc, kind):
                        return error(status, str(exc) or "refused")
                raise

        return wrapped

    return decorate


def _conversation(auth: VisitorAuth, conversation_id: str) -> ChatConversation:
    conversation = actions.conversation_for_visitor(
        auth.visitor, conversation_id, only_conversation_id=auth.only_conversation_id
    )
    if conversation is None:
        raise WidgetError(404, "no such conversation")
    return conversation


def _conversations(auth: VisitorAuth) -> dict[str, Any]:
    """`conversations` (newest first: the history list) and `conversations_more`."""
    found = actions.visitor_conversations(auth.visitor, only_conversation_id=auth.only_conversation_id)
    return {
        "conversations": [frames.conversation_summary(c) for c in found[: actions.MAX_CONVERSATIONS]],
        "conversations_more": len(found) > actions.MAX_CONVERSATIONS,
    }


def _unscoped(auth: VisitorAuth) -> ChatVisitor:
    """The visitor, for calls a hosted-page token (one conversation) may not make (403)."""
    if auth.only_conversation_id is not None:
        raise WidgetError(403, "not allowed on a conversation page")
    return auth.visitor


# --- the loader, its config, the frame --------------------------------------------------------


def loader_js(request: HttpRequest) -> HttpResponseBase:
    path = finders.find("widget/loader.js")
    if not path:
        return error(404, "the widget loader is not installed")
    response = FileResponse(open(path, "rb"), content_type="text/javascript; charset=utf-8")  # noqa: SIM115
    response["Cache-Control"] = "public, max-age=300"
    response["X-Content-Type-Options"] = "nosniff"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


def _frame_url(inbox: Inbox) -> str:
    return settings.SITE_URL + reverse("widget:frame", args=[inbox.public_token])


def _ws_origin() -> str:
    site = urlsplit(settings.SITE_URL)
    return f"{'wss' if site.scheme == 'https' else 'ws'}://{site.netloc}"


@csrf_exempt
def config(request: HttpRequest, inbox_token: str) -> HttpResponseBase:
    """For the loader on the customer's site: colour, position, the frame's URL. CORS for allowed origins."""
    if request.method not in ("GET", "OPTIONS"):
        return error(405, "use GET")
    if not limits.allow_ip_request(limits.client_ip(request)):
        return error(429, "too many requests from your address; wait a minute")
    try:
        inbox = _inbox(inbox_token)
    except WidgetError as exc:
        return error(exc.status, exc.message)
    origin = request.META.get("HTTP_ORIGIN", "")
    if origin and not is_allowed(inbox, origin):
        return error(403, f"origin {normalize_origin(origin) or 'invalid'} is not allowed for this inbox")
    if request.method == "OPTIONS":
        response: HttpResponseBase = HttpResponse(status=204)
        response["Access-Control-Allow-Methods"] = "GET"
        response["Access-Control-Max-Age"] = "600"
    else:
        response = _json(
            {
                "color": inbox_color(inbox),
                "position": inbox_position(inbox),
                "frame_url": _frame_url(inbox),
                "launcher_label": f"Chat with {inbox.name}",
            }
        )
        response["Cache-Control"] = "public, max-age=60"
    if origin:
        response["Access-Control-Allow-Origin"] = normalize_origin(origin)
    response["Vary"] = "Origin"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def frame_config(inbox: Inbox, *, site: str, lang: str) -> dict[str, Any]:
    """The `config` the widget app reads (json_script "sb-config")."""
    try:
        proactive = clean_proactive(inbox.settings.get("proactive"))
    except ValueError:
        proactive = []
    name_mode, email_mode = prechat_mode(inbox, "name"), prechat_mode(inbox, "email")
    return {
        "inbox": inbox.public_token,
        "api": settings.SITE_URL + reverse("widget:session", args=[inbox.public_token]).rsplit("session", 1)[0],
        "ws": f"{_ws_origin()}/ws/widget/?inbox={inbox.public_token}",
        "site": site,
        "lang": lang,
        "color": inbox_color(inbox),
        "position": inbox_position(inbox),
        "greeting": str(inbox.settings.get("greeting") or ""),
        "offline_message": str(inbox.settings.get("offline_message") or ""),
        "online": is_online(inbox),
        "office_hours_text": office_hours_text(inbox),
        "prechat": {
            "enabled": name_mode != "off" or email_mode != "off",
            "name": name_mode,
            "email": email_mode,
            "message": str(inbox.settings.get("prechat_message") or ""),
        },
        "proactive": proactive,
        "csat": frames._flag(inbox.settings.get("csat"), True),
        "sound": frames._flag(inbox.settings.get("sound"), True),
        "poll_seconds": settings.CHAT_POLL_SECONDS,
        "max_chars": settings.CHAT_MESSAGE_MAX_CHARS,
        "max_files": settings.CHAT_MESSAGE_MAX_FILES,
        "max_upload_bytes": min(settings.CHAT_UPLOAD_MAX_BYTES, settings.ATTACHMENT_MAX_BYTES),
        "token": None,
    }


def _page_headers(response: HttpResponseBase, ancestors: str) -> HttpResponseBase:
    response["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"media-src 'self' data: blob:; connect-src 'self' {_ws_origin()}; "
        f"frame-ancestors {ancestors}; base-uri 'none'; form-action 'none'; object-src 'none'"
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response


def _lang(request: HttpRequest, inbox: Inbox) -> str:
    lang = str(request.GET.get("lang") or inbox.settings.get("locale") or "")[:35]
    return lang if _LANG.match(lang) else ""


@xframe_options_exempt
def frame(request: HttpRequest, inbox_token: str) -> HttpResponseBase:
    """The widget's iframe: embeddable by the inbox's allowed origins only (CSP frame-ancestors)."""
    if request.method != "GET":
        return error(405, "use GET")
    try:
        inbox = _inbox(inbox_token)
    except WidgetError as exc:
        return error(exc.status, exc.message)
    site = normalize_origin(str(request.GET.get("site") or ""))
    if request.GET.get("site") and (not site or not is_allowed(inbox, site)):
        return error(403, "this website is not allowed to embed the chat")
    context = {"config": frame_config(inbox, site=site, lang=_lang(request, inbox)), "inbox": inbox}
    return _page_headers(render(request, "widget/frame.html", context), frame_ancestors(inbox))


@xframe_options_exempt
def conversation_page(request: HttpRequest, inbox_token: str, link_token: str) -> HttpResponseBase:
    """The hosted conversation (the link in a continuity email): the widget as a page of ours."""
    if request.method != "GET":
        return error(405, "use GET")
    try:
        inbox = _inbox(inbox_token)
        public_id, expires_at = read_conversation_link(link_token, max_age_seconds=settings.CHAT_LINK_MAX_AGE_SECONDS)
    except WidgetError as exc:
        return error(exc.status, exc.message)
    except BadToken as exc:
        return error(404, str(exc))
    conversation = ChatConversation.objects.filter(inbox=inbox, public_id=public_id).select_related("visitor").first()
    if conversation is None:
        return error(404, "no such conversation")
    config_data = frame_config(inbox, site=normalize_origin(settings.SITE_URL), lang=_lang(request, inbox))
    # Good for this one conversation only, and only as long as the link (review #4).
    config_data["token"] = scoped_visitor_token(
        inbox.public_token, conversation.visitor.public_id, conversation.public_id, expires_at=expires_at
    )
    config_data["conversation"] = conversation.public_id.hex
    context = {"config": config_data, "inbox": inbox}
    return _page_headers(render(request, "widget/conversation.html", context), "'self'")


# --- session and identity ----------------------------------------------------------------------


@api("POST", auth=False)
def session(request: HttpRequest, inbox: Inbox) -> HttpResponseBase:
    data = read_json(request)
    origin = request.META.get("HTTP_ORIGIN")
    raw_site = data.get("site")
    if raw_site is not None and not isinstance(raw_site, str):
        raise WidgetError(400, "site must be an origin")
    site = normalize_origin(raw_site or "") or normalize_origin(settings.SITE_URL)
    if raw_site and site != normalize_origin(raw_site):
        raise WidgetError(400, "site must be an origin")
    check_origin(inbox, origin, site_origin=site)
    token = data.get("token")
    auth: VisitorAuth | None = None
    if isinstance(token, str) and token:
        try:
            auth = _visitor(request, inbox, token=token)
        except BadToken:
            auth = None  # another inbox's, forged, expired, or of a visitor gone: a new visitor
    if auth is not None and auth.only_conversation_id is None and auth.visitor.site_origin != site:
        # A token is for the website it was issued on; another site gets a visitor of its own
        # (site_origin never changes, so removing a site revokes its visitors: docs/chat.md).
        auth = None
    ip = limits.client_ip(request)
    if auth is None and not limits.allow_new_session(ip):
        raise WidgetError(429, "too many new chats from your address; wait a minute")
    visitor = actions.do_start_chat_session(
        inbox,
        visitor=auth.visitor if auth is not None else None,
        site=site,
        url=data.get("url"),
        title=data.get("title"),
        referrer=data.get("referrer"),
        locale=data.get("locale"),
        user_agent=str(request.META.get("HTTP_USER_AGENT", "")),
    )
    if auth is not None and auth.only_conversation_id is not None:
        # A hosted conversation page keeps its one-conversation token.
        answer_token, auth = token, VisitorAuth(visitor, auth.only_conversation_id)
    else:
        answer_token, auth = visitor_token(inbox.public_token, visitor.public_id), VisitorAuth(visitor)
    return _json(
        {
            "token": answer_token,
            "visitor": frames.visitor_frame(visitor),
            **_conversations(auth),
            "proactive_shown": actions.proactive_shown(visitor),
        }
    )


@api("POST")
def identify(request: HttpRequest, inbox: Inbox, auth: VisitorAuth) -> HttpResponseBase:
    data = read_json(request)
    visitor = actions.do_identify_chat_visitor(
        _unscoped(auth),
        user_id=data.get("user_id"),
        email=data.get("email"),
        name=data.get("name"),
        user_hash=data.get("user_hash"),
        issued_at=data.get("issued_at"),
    )
    return _json(
        {
            # The same token, unless the browser was verified as another user before.
            "token": visitor_token(inbox.public_token, visitor.public_id),
            "visitor": frames.visitor_frame(visitor),
            **_conversations(VisitorAuth(visitor)),
        }
    )


@api("POST")
def reset(request: HttpRequest, inbox: Inbox, auth: VisitorAuth) -> HttpResponseBase:
    """`Switchboard.reset()`: the website's user logged out; the widget then forgets the token."""
    read_json(request)
    actions.do_reset_chat_visitor(_unscoped(auth))
    return _no_content()


# --- messages and files -------------------------------------------------------------------------


@api("POST")
def uploads(request: HttpRequest, inbox: Inbox, auth: VisitorAuth) -> HttpResponseBase:
    limit = min(settings.CHAT_UPLOAD_MAX_BYTES, settings.ATTACHMENT_MAX_BYTES)
    # Before anything reads the body: the file is cut at the limit while it is read, whatever
    # Content-Length says (helpdesk/composer.py).
    request.upload_handlers = [BoundedUploadHandler(request, limit), *request.upload_handlers]
    raw_length = request.META.get("CONTENT_LENGTH")
    if not raw_length:
        raise WidgetError(411, "uploads need a Content-Length")
    try:
        declared = int(raw_length)
    except ValueError:
        raise WidgetError(400, "bad Content-Length") from None
    if declared > limit + _MULTIPART_SLACK:
        raise WidgetError(413, f"files may be at most {limit} bytes")
    if not (request.content_type or "").startswith("multipart/form-data"):
        raise WidgetError(400, "send the file as multipart/form-data, field 'file'")
    upload = request.FILES.get("file")
    if getattr(request, "upload_over_limit", False):
        raise WidgetError(413, f"files may be at most {limit} bytes")
    if upload is None:
        raise WidgetError(400, "no file in the field 'file'")
    item = actions.do_store_chat_upload(auth.visitor, upload=upload, ip=limits.client_ip(request))
    return _json(
        {"id": item.public_id.hex, "name": item.filename, "size": item.size, "content_type": item.content_type},
        status=201,
    )


@api("POST")
def messages(request: HttpRequest, inbox: Inbox, auth: VisitorAuth) -> HttpResponseBase:
    data = read_json(request)
    conversation = data.get("conversation")
    if conversation is not None and not isinstance(conversation, str):
        raise WidgetError(400, "conversation must be a conversation id or null")
    visitor = auth.visitor
    receipt = actions.do_receive_chat_message(
        visitor,
        conversation=conversation,
        client_msg_id=data.get("client_msg_id"),
        text=data.get("text"),
        uploads=data.get("uploads"),
        prechat=data.get("prechat"),
        only_conversation_id=auth.only_conversation_id,
        ip=limits.client_ip(request),
    )
    return _json(
        {
            "conversation": frames.conversation_frame(receipt.conversation) if receipt.conversation else None,
            "message": frames.message_frame(receipt.message, visitor.public_id) if receipt.message else None,
            "duplicate": receipt.duplicate,
        },
        status=201,
    )


def _after(request: HttpRequest) -> int:
    raw = request.GET.get("after", "0") or "0"
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10:
        raise WidgetError(400, "after must be a sequence number")
    return int(raw)


@api("GET")
def events(request: HttpRequest, inbox: Inbox, auth: VisitorAuth, conversation_id: str) -> HttpResponseBase:
    """The HTTP fallback: the conversation's visible events after `after`, one page."""
    after = _after(request)
    conversation = _conversation(auth, conversation_id)
    visitor = auth.visitor
    presence.touch(visitor.public_id, presence.POLL)
    actions.do_touch_chat_visitor(visitor)
    found, last_seq = frames.events_after(conversation, after, viewer=visitor.public_id)
    from helpdesk.chat_queue import queue_info

    return _json(
        {
            "events": found,
            "last_seq": last_seq,
            "queue": queue_info(conversation),
            "agent_typing": frames.agent_typing(conversation.ticket_id),
            "poll_seconds": settings.CHAT_POLL_SECONDS,
        }
    )


@api("POST")
def read(request: HttpRequest, inbox: Inbox, auth: VisitorAuth, conversation_id: str) -> HttpResponseBase:
    data = read_json(request)
    conversation = _conversation(auth, conversation_id)
    if not limits.allow_ping(auth.visitor.public_id):
        raise WidgetError(429, "too many read reports")
    actions.do_mark_chat_read(conversation, message_id=data.get("message_id"))
    return _no_content()


@api("POST")
def typing(request: HttpRequest, inbox: Inbox, auth: VisitorAuth, conversation_id: str) -> HttpResponseBase:
    data = read_json(request)
    conversation = _conversation(auth, conversation_id)
    actions.publish_visitor_typing(auth.visitor, conversation, typing=data.get("typing"))
    return _no_content()


@api("POST")
def end(request: HttpRequest, inbox: Inbox, auth: VisitorAuth, conversation_id: str) -> HttpResponseBase:
    conversation = _conversation(auth, conversation_id)
    return _json(frames.conversation_frame(actions.do_end_chat_by_visitor(conversation)))


@api("POST")
def rating(request: HttpRequest, inbox: Inbox, auth: VisitorAuth, conversation_id: str) -> HttpResponseBase:
    data = read_json(request)
    conversation = _conversation(auth, conversation_id)
    rated = actions.do_rate_chat(conversation, rating=data.get("rating"), comment=data.get("comment"))
    return _json(frames.conversation_frame(rated))


@api("POST")
def transcript(request: HttpRequest, inbox: Inbox, auth: VisitorAuth, conversation_id: str) -> HttpResponseBase:
    data = read_json(request)
    conversation = _conversation(auth, conversation_id)
    address = actions.do_request_chat_transcript(
        conversation, email=data.get("email"), actor=None, visitor=auth.visitor, ip=limits.client_ip(request)
    )
    return _json({"status": "queued", "email": address}, status=202)


@api("POST")
def page(request: HttpRequest, inbox: Inbox, auth: VisitorAuth) -> HttpResponseBase:
    data = read_json(request)
    actions.do_record_chat_page(auth.visitor, url=data.get("url"), title=data.get("title"))
    return _no_content()


@api("POST")
def proactive(request: HttpRequest, inbox: Inbox, auth: VisitorAuth) -> HttpResponseBase:
    data = read_json(request)
    actions.do_mark_proactive_shown(auth.visitor, rule=data.get("rule"))
    return _no_content()


def file(request: HttpRequest, token: str) -> HttpResponseBase:
    """A chat attachment by its signed link: only for the visitor it was made for, only a file
    of a public message of a conversation that visitor may read."""
    if request.method != "GET":
        return error(405, "use GET")
    try:
        attachment_id, visitor_id = read_file_token(token, max_age_seconds=settings.CHAT_FILE_URL_MAX_AGE_SECONDS)
    except BadToken:
        return error(404, "no such file (or the link has expired)")
    visitor = ChatVisitor.objects.select_related("inbox").filter(public_id=visitor_id).first()
    if visitor is None or not visitor.inbox.is_active:
        return error(404, "no such file")
    try:
        check_origin(visitor.inbox, None, site_origin=visitor.site_origin)
    except OriginRefused as exc:
        return error(403, str(exc))
    ticket_ids = ChatConversation.objects.filter(actions._visitor_scope(visitor)).values("ticket_id")
    attachment = (
        Attachment.objects.filter(
            pk=attachment_id,
            message__ticket_id__in=ticket_ids,
            message__direction__in=[Direction.INBOUND, Direction.OUTBOUND],
        )
        .only("file", "filename", "content_type")
        .first()
    )
    if attachment is None:
        return error(404, "no such file")
    try:
        handle = attachment.file.open("rb")
    except FileNotFoundError:
        return error(404, "the file is missing from storage")
    shown = attachment.content_type in _SHOWN_TYPES
    response = FileResponse(
        handle,
        # An <img> shows it all the same; opened as a page it downloads.
        as_attachment=True,
        filename=attachment.filename,
        content_type=attachment.content_type if shown else "application/octet-stream",
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=300"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    return response
