"""An on-disk spool of what must reach the appliance (update reports).

Each entry is one JSON file, written to a temporary name, fsynced and
renamed before anything is sent, so neither an appliance nor an agent
restart (nor a power cut) loses it.  An entry is deleted only after a 2xx
answer; the appliance stores a resend of the same ``report_id`` once, so
sending twice is harmless.  An entry the appliance refuses for good (4xx
other than 401) moves to ``dead/`` for a person to read."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from agent._files import ensure_dir, fsync_dir, write_json
from agent._http import ApiClient
from agent.exceptions import SpoolFullError, TokenRefusedError, UnreachableError

logger = logging.getLogger(__name__)
MAX_ENTRIES = 10_000  # oldest are kept; a device that cannot send for this long has bigger problems


@dataclass
class FlushResult:
    sent: int = 0
    duplicates: int = 0
    dead: int = 0
    left: int = 0
    unreachable: bool = False


class Spool:
    def __init__(self, folder: Path):
        self.folder = ensure_dir(folder)
        self.dead = self.folder / "dead"
        self._lock = threading.Lock()

    def add(self, path: str, body: dict) -> Path:
        """Keep ``body`` (for POST ``path``) on disk until the appliance has it."""
        entries = self.entries()
        if len(entries) >= MAX_ENTRIES:
            raise SpoolFullError(f"spool {self.folder} is full ({MAX_ENTRIES} entries): the appliance has not "
                                 "taken reports for a long time; check `airlock-agent status`")
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
        entry = self.folder / name
        write_json(entry, {"path": path, "body": body})
        return entry

    def entries(self) -> list[Path]:
        """Oldest first (names start with the time they were made)."""
        return sorted(p for p in self.folder.glob("*.json") if not p.name.startswith("."))

    def __len__(self) -> int:
        return len(self.entries())

    def flush(self, client: ApiClient, token: str) -> FlushResult:
        """Send every entry, oldest first; stop at the first one that cannot
        reach the appliance.  Raises TokenRefusedError on 401."""
        result = FlushResult()
        with self._lock:
            for entry in self.entries():
                try:
                    item = json.loads(entry.read_text())
                except FileNotFoundError:
                    continue  # another process (`airlock-agent report` beside the daemon) sent it meanwhile
                except (OSError, ValueError):
                    self._bury(entry, {"error": "unreadable spool entry"})
                    result.dead += 1
                    continue
                try:
                    status, answer = client.post(item["path"], item["body"], token)
                except UnreachableError as exc:
                    logger.info("appliance unreachable, %d report(s) stay spooled: %s",
                                len(self.entries()), exc)
                    result.unreachable = True
                    break
                if 200 <= status < 300:
                    entry.unlink(missing_ok=True)  # the other process may have sent it too: stored once
                    result.sent += 1
                    result.duplicates += bool(answer.get("duplicate"))
                elif status == 401:
                    raise TokenRefusedError("the appliance refused the token: enroll again")
                elif status in (429,) or status >= 500:
                    logger.warning("appliance answered %s; reports stay spooled", status)
                    result.unreachable = True
                    break
                else:
                    logger.error("appliance refused a spooled report for good (%s %s): %s",
                                 status, answer.get("error"), answer.get("message"))
                    self._bury(entry, answer)
                    result.dead += 1
            if result.sent:
                fsync_dir(self.folder)
        result.left = len(self.entries())
        return result

    def _bury(self, entry: Path, answer: dict) -> None:
        ensure_dir(self.dead)
        write_json(self.dead / (entry.stem + ".answer.json"), answer)
        try:
            os.replace(entry, self.dead / entry.name)
        except FileNotFoundError:
            return  # another process buried (or sent) it meanwhile
        fsync_dir(self.folder)
