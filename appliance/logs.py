"""Where the ``airlock`` command's log records go.

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
import sys
from pathlib import Path

from server.settings import Settings

LOG_FILE = Path("log") / "airlock.log"  # inside the home
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s [pid %(process)d]: %(message)s"
STDERR_FORMAT = "%(levelname)s %(name)s: %(message)s"
MAX_PENDING = 1000  # records held until the home is known


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
            target: logging.Handler = logging.StreamHandler(sys.stderr)
            target.setFormatter(logging.Formatter(STDERR_FORMAT))
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
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(STDERR_FORMAT))
            return handler
        handler.setFormatter(logging.Formatter(FILE_FORMAT))
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
