"""`/files/api/<token>/`: the files of agent replies sent through an API inbox, fetched by
the receiver of the callback from the signed, expiring URL the callback names."""

from __future__ import annotations

from django.core import signing
from django.http import FileResponse, HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_GET

from channels_inbox.adapters.api import read_attachment_token
from helpdesk.models import Attachment, Direction


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@require_GET
def api_attachment(request: HttpRequest, token: str) -> HttpResponseBase:
    try:
        pk, digest = read_attachment_token(token)
    except signing.SignatureExpired:
        return _error(410, "this download link has expired")
    except signing.BadSignature:
        return _error(404, "no such file")
    # Only files of replies that went out through an API inbox: the token names nothing else.
    attachment = (
        Attachment.objects.filter(
            pk=pk, sha256=digest, message__direction=Direction.OUTBOUND, message__inbox__kind="api"
        )
        .only("file", "filename")
        .first()
    )
    if attachment is None:
        return _error(404, "no such file")
    try:
        handle = attachment.file.open("rb")
    except FileNotFoundError:
        return _error(404, "the file is missing from storage")
    response = FileResponse(
        handle, as_attachment=True, filename=attachment.filename, content_type="application/octet-stream"
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-store"
    return response
