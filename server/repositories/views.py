"""``/repos/<name>/metadata/<file>`` and ``/repos/<name>/targets/<path>``.

Files are served as the plain tree holds them: exact bytes, with
Content-Length, ETag and Range (206) from Werkzeug's conditional responses.
``timestamp.json`` and ``root.json`` must never be cached; versioned and
hash-prefixed files never change, so they may be cached for a year.  A name
that is not in the tree is a 404, never a 403 (TUF clients stop walking the
root chain on 404).
"""

import os
import re
import stat
from datetime import UTC, datetime

from flask import Blueprint, Response, abort, current_app, request
from werkzeug.wsgi import wrap_file

from server.delivery.gate import admit_download, busy_response, paced_response
from server.delivery.slots import Ticket
from server.repositories.store import RepositoryStore, is_metadata_name
from signing.exceptions import UnsafeNameError
from signing.paths import check_target_path, role_filename

bp = Blueprint("repositories", __name__)

_REPO = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
IMMUTABLE = "public, max-age=31536000, immutable"


def _send(path, mimetype: str, cache_control: str):
    """Serve the file at ``path`` from one open descriptor, so that the bytes,
    length and ETag all come from the same file even if a publish swaps the
    tree meanwhile."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        abort(404)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        abort(404)
    f = os.fdopen(fd, "rb")
    response = Response(wrap_file(request.environ, f), mimetype=mimetype, direct_passthrough=True)
    response.content_length = st.st_size
    response.set_etag(f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}")
    response.last_modified = datetime.fromtimestamp(st.st_mtime, UTC)
    response.headers["Cache-Control"] = cache_control
    return response.make_conditional(request, accept_ranges=True, complete_length=st.st_size)


def _store(name: str) -> RepositoryStore:
    if not _REPO.match(name):
        abort(404)
    return RepositoryStore(current_app.config["AIRLOCK"].public_dir, name)


_VERSIONED_REQUEST = re.compile(r"([1-9][0-9]{0,18})\.(.+)\.json", re.DOTALL)


def stored_name(requested: str) -> str:
    """The file a request names.  The server has already decoded the URL, so
    a delegated role is quoted again exactly as it is stored
    (:func:`signing.paths.role_filename`): python-tuf's ``quote`` and
    tuf-js's ``encodeURIComponent`` reach the same file, and a decoded ``/``
    or ``..`` stays inside the one file name."""
    m = _VERSIONED_REQUEST.fullmatch(requested)
    if m is None:
        return requested
    return role_filename(int(m.group(1)), m.group(2))


@bp.get("/repos/<name>/metadata/<path:requested>")
def metadata(name: str, requested: str):
    store = _store(name)
    filename = stored_name(requested)
    if not is_metadata_name(filename):
        abort(404)
    cache = "no-cache" if filename in ("timestamp.json", "root.json") else IMMUTABLE
    return _send(store.metadata_dir / filename, "application/json", cache)


@bp.get("/repos/<name>/targets/<path:relpath>")
def targets(name: str, relpath: str):
    store = _store(name)
    try:
        check_target_path(relpath)
    except UnsafeNameError:
        abort(404)
    if any(part.startswith(".tmp-") for part in relpath.split("/")):
        abort(404)
    # the download caps (server.delivery.gate): a slot for the file's whole length, or 503 + Retry-After
    ticket = admit_download(current_app, request.remote_addr)
    if not isinstance(ticket, Ticket):
        return busy_response(ticket)
    try:
        return paced_response(_send(store.targets_dir / relpath, "application/octet-stream", IMMUTABLE), ticket)
    except BaseException:
        ticket.release()
        raise
