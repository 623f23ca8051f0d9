"""Where the ``airlock`` command's log records go, and in what form.

Every record is one line of ``key=value`` fields (:class:`KeyValueFormatter`):
``ts``, ``level``, ``logger``, ``msg``, then the fields a caller passed as
``extra={"kv": {...}}`` (a request's ``request_id``, ``method``, ``path``,
``status`` ...).  A value that is not a plain token is double-quoted, with
every control, format or unassigned character and the backslash escaped by
:func:`server.text.escape_text` and ``"`` as ``\\"``, and bounded, so no
string from a device or the LAN can start a line, fake a field or move a
cursor; a traceback becomes one escaped ``exc`` field.

A person at a terminal gets one line per outcome: the result, or
``airlock: error: ...``.  The records behind it (an import refused, and
why) are kept in ``HOME/log/airlock.log``, at the ``log_level`` setting,
so the terminal never shows a refusal twice.  The long-running services
(``airlock serve``, ``airlock mdns``) log to stderr instead, which journald
collects under systemd.

Records logged before the settings are known (the home is only known once
the command line is parsed) wait in a short buffer and follow the others.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
import time
from pathlib import Path

from server.settings import Settings
from server.text import escape_text

LOG_FILE = Path("log") / "airlock.log"  # inside the home
MAX_PENDING = 1000  # records held until the home is known
MAX_MESSAGE = 4000  # characters of a message kept in its line
MAX_VALUE = 300  # characters of one field's value
MAX_EXC = 8000  # characters of a traceback
_BARE = re.compile(r"^[A-Za-z0-9._:/@+,%-]{1,300}$")  # values written without quotes
_KEY = re.compile(r"[^A-Za-z0-9_]")


def kv_value(value: object, limit: int = MAX_VALUE) -> str:
    """One field's value: bare when it is a plain token, else quoted and escaped."""
    text = "" if value is None else str(value)
    if _BARE.match(text):
        return text
    return '"' + escape_text(text, limit).replace('"', '\\"') + '"'


class KeyValueFormatter(logging.Formatter):
    """One line per record: ``ts=... level=... logger=... msg="..." k=v ...``."""

    def __init__(self, timestamps: bool = True):
        super().__init__()
        self.timestamps = timestamps  # journald stamps lines itself; the log file needs its own

    def format(self, record: logging.LogRecord) -> str:
        fields: list[tuple[str, object]] = []
        if self.timestamps:
            fields.append(("ts", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                           + f".{int(record.msecs):03d}Z"))
        fields += [("level", record.levelname.lower()), ("logger", record.name), ("pid", record.process)]
        try:
            message = record.getMessage()
        except (TypeError, ValueError) as exc:  # a bad format string must not lose the record
            message = f"{record.msg!r} (unformattable: {exc})"
        out = [f"{k}={kv_value(v)}" for k, v in fields]
        out.append(f"msg={kv_value(message, MAX_MESSAGE)}")
        extra = getattr(record, "kv", None)
        if isinstance(extra, dict):
            for key, value in extra.items():
                name = _KEY.sub("_", str(key))[:40] or "field"
                out.append(f"{name}={kv_value(value)}")
        if record.exc_info:
            out.append(f"exc={kv_value(self.formatException(record.exc_info), MAX_EXC)}")
        return " ".join(out)


def stderr_handler() -> logging.Handler:
    """The services' handler: key=value lines on stderr, which journald keeps."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter(timestamps=False))
    return handler


class CommandLog(logging.Handler):
    """The root logger's handler for one run of ``airlock``."""

    def __init__(self, service: bool) -> None:
        super().__init__(logging.NOTSET)
        self.service = service
        self.target: logging.Handler | None = None
        self.path: Path | None = None
        self.pending: list[logging.LogRecord] = []
        self._settings: Settings | None = None
        self._root_level = logging.getLogger().level

    def install(self) -> CommandLog:
        root = logging.getLogger()
        root.addHandler(self)
        root.setLevel(logging.WARNING)  # until the log_level setting is known
        return self

    def emit(self, record: logging.LogRecord) -> None:
        if self.target is None:
            if len(self.pending) < MAX_PENDING:
                self.pending.append(record)
        elif record.levelno >= self.target.level:
            self.target.handle(record)

    def settle(self, settings: Settings) -> None:
        """Send records where they belong, now that the home is known."""
        if self.target is not None:
            return
        self._settings = settings
        level = settings.log_level.upper()
        logging.getLogger().setLevel(level)
        if not self.service and not settings.home.is_dir():
            return  # `airlock init` makes it: hold the records until the end
        if self.service:
            target: logging.Handler = stderr_handler()
        else:
            target = self._file(settings.home / LOG_FILE)
        target.setLevel(level)
        self.target = target
        for record in self.pending:
            self.emit(record)
        self.pending.clear()

    def _file(self, path: Path) -> logging.Handler:
        try:
            path.parent.mkdir(mode=0o750, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
            os.close(fd)
            handler: logging.Handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
            self.path = path
        except OSError:
            # A user who may read the home but not write its log (or a home
            # not made yet): stderr rather than losing the record.
            return stderr_handler()
        handler.setFormatter(KeyValueFormatter())
        return handler

    def close(self) -> None:
        if self.target is None and self._settings is not None and self.pending:
            self.service = not self._settings.home.is_dir()  # nowhere else to keep them
            self.settle(self._settings)
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._root_level)
        if self.target is not None:
            self.target.close()
        self.pending.clear()
        super().close()
