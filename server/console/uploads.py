"""Taking an uploaded bundle: the request class that streams a form's file
into the appliance's home (never into memory or /tmp) with the
``max_upload_bytes`` cap on the upload endpoints only, and the one helper
both the console page and the admin API use to turn an upload into a
running import job (``server.imports.uploads``)."""

from __future__ import annotations

from flask import Request, current_app
from werkzeug.exceptions import RequestEntityTooLarge

from server.devices.exceptions import TooLargeError
from server.imports import uploads
from server.imports.uploads import ImportJob, UploadError

UPLOAD_ENDPOINTS = frozenset({"console.import_upload", "admin_api.upload_import"})
CHUNK = 1 << 20  # bytes copied at a time from a raw upload


class UploadingRequest(Request):
    @property
    def max_content_length(self) -> int | None:
        if self._max_content_length is None and self.endpoint in UPLOAD_ENDPOINTS and current_app:
            return current_app.config["AIRLOCK"].max_upload_bytes
        return super().max_content_length

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        self._max_content_length = value

    def _load_form_data(self) -> None:
        try:
            super()._load_form_data()
        except RequestEntityTooLarge:
            if self.endpoint not in UPLOAD_ENDPOINTS:
                raise
            raise too_large() from None

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        if self.endpoint in UPLOAD_ENDPOINTS:
            return uploads.incoming_file(current_app.config["AIRLOCK"])
        return super()._get_file_stream(total_content_length, content_type, filename, content_length)


def too_large() -> TooLargeError:
    """A body over ``max_upload_bytes``, naming the cap; the partial file was
    never linked into a job and is gone with its request."""
    cap = current_app.config["AIRLOCK"].max_upload_bytes
    return TooLargeError(f"the upload is larger than this appliance takes ({cap} bytes, the max_upload_bytes "
                         "setting): bring the bundle on USB media (`airlock import`), or raise max_upload_bytes")


def job_from_form(request, operator: str) -> ImportJob:
    """The form's ``bundle`` file as a started import job."""
    settings = current_app.config["AIRLOCK"]
    sent = request.files.get("bundle")
    if sent is None or not sent.filename:
        raise UploadError("choose a bundle file (.tar or .tar.gz) to upload")
    sent.stream.flush()
    job = uploads.create_job(settings, sent.stream.name, sent.filename, operator)
    sent.close()
    return uploads.start(settings, job, current_app.config["AIRLOCK_IMPORT_RUNNER"])


def job_from_body(request, operator: str, filename: str) -> ImportJob:
    """The raw request body (a script's ``--data-binary @bundle.tar.gz``) as a
    started import job, streamed to the home in chunks."""
    settings = current_app.config["AIRLOCK"]
    if request.mimetype != "application/octet-stream":
        raise UploadError("send the bundle as the request body with Content-Type: application/octet-stream")
    with uploads.incoming_file(settings) as incoming:
        stream = request.stream
        while True:
            try:
                chunk = stream.read(CHUNK)
            except RequestEntityTooLarge:
                raise too_large() from None
            if not chunk:
                break
            incoming.write(chunk)
        incoming.flush()
        job = uploads.create_job(settings, incoming.name, filename, operator)
    return uploads.start(settings, job, current_app.config["AIRLOCK_IMPORT_RUNNER"])

