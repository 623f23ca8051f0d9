"""The progress bar itself (appliance/progress.py)."""

from __future__ import annotations

import io

from appliance.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def frames(stream: io.StringIO) -> list[str]:
    return [f.replace("\x1b[K", "") for f in stream.getvalue().split("\r") if f]


def test_a_new_phase_is_drawn_at_once_and_named():
    tty = Terminal()
    bar = ProgressBar("importing", stream=tty, min_interval=3600)
    bar(0, None, 0, phase="copying metadata")
    bar(10, None, 3, phase="copying metadata")  # within the interval: not drawn
    bar(0, None, 3, phase="verifying")
    bar(0, 100, 3, phase="copying targets")
    bar(100, 100, 5, phase="copying targets")  # done: drawn whatever the interval
    bar.close()
    assert tty.getvalue().endswith("\n")  # close() ends the line
    shown = [f.rstrip("\n") for f in frames(tty)]
    assert [f.split("  ")[0].split(" [")[0] for f in shown] == [
        "importing: copying metadata", "importing: verifying", "importing: copying targets",
        "importing: copying targets"]
    assert "5 files" in shown[-1] and "100 B / 100 B" in shown[-1]


def test_exports_call_it_without_a_phase():
    tty = Terminal()
    bar = ProgressBar("exporting", stream=tty, min_interval=0)
    bar(2000, None, 1)
    bar(5000, 5000, 2)
    assert frames(tty)[0].startswith("exporting 2.0 kB  1 files")
    assert frames(tty)[1].startswith("exporting [")


def test_nothing_is_drawn_when_stderr_is_not_a_terminal():
    plain = io.StringIO()
    bar = ProgressBar("importing", stream=plain, min_interval=0)
    bar(0, None, 0, phase="copying metadata")
    bar.close()
    assert plain.getvalue() == ""
