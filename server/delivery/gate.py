"""The seam between the ``/repos/<name>/targets/`` view and the download
caps: admit a download (or say when to come back), and hold its slots and
pace for the response's whole length.  Only target downloads come here."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import cast

from flask import Flask, Response

from server.delivery.caps import appliance_cap, caps_for_address
from server.delivery.slots import Busy, DownloadSlots, Ticket, paced
from server.models import database


def _slots(app: Flask) -> DownloadSlots:
    slots = app.extensions.get("airlock.download_slots")
    if slots is None:
        settings = app.config["AIRLOCK"]
        slots = DownloadSlots(settings.home / "run" / "download-slots", settings.download_retry_after)
        app.extensions["airlock.download_slots"] = slots
    return slots


def admit_download(app: Flask, address: str | None) -> Ticket | Busy:
    """A ticket for a download from ``address``, or why it must wait."""
    caps = [appliance_cap(app.config["AIRLOCK"]), *caps_for_address(database, address)]
    if not any(c.max_downloads for c in caps):
        return Ticket([], 0)
    return _slots(app).admit(caps)


def busy_response(busy: Busy) -> Response:
    response = Response(busy.message(), status=503, mimetype="text/plain")
    response.headers["Retry-After"] = str(busy.retry_after)
    response.headers["Cache-Control"] = "no-store"
    return response


class _Holding:
    """A response body that releases its ticket when the server closes it
    (Werkzeug hands a passthrough body to the server as it is, so the
    response's own ``call_on_close`` would never run)."""

    def __init__(self, body: Iterable[bytes], ticket: Ticket):
        self.body, self.ticket = body, ticket

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.ticket.release()


def paced_response(response: Response, ticket: Ticket) -> Response:
    """``response`` holding ``ticket`` until its body is closed (sent, or
    the client went away), paced to the ticket's rate.  Without any cap it
    is left as it is (gunicorn may then ``sendfile`` it)."""
    if not ticket.fds:
        return response
    body = cast(Iterable[bytes], response.response)  # bytes: a file
    if ticket.pace and response.status_code in (200, 206):
        body = paced(body, ticket.pace)
    response.response = _Holding(body, ticket)
    return response
