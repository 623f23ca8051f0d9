"""The import's progress bar, as a terminal gets it from a real `airlock
import`: it names each phase in order and its file count never goes back."""

from __future__ import annotations

import contextlib
import io
import re

from tests.conftest import pin


class Terminal(io.StringIO):
    """What the bar writes, from a stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _import_on_a_terminal(home, media) -> tuple[int, list[tuple[str, int]]]:
    from appliance.cli import main

    terminal, out = Terminal(), io.StringIO()
    with contextlib.redirect_stderr(terminal), contextlib.redirect_stdout(out):
        code = main(["--home", str(home), "import", str(media)])
    frames = [f for f in terminal.getvalue().replace("\x1b[K", "").split("\r") if f.strip()]
    shown = []
    for frame in frames:
        m = re.match(r"importing: (copying metadata|verifying|copying targets|publishing)\b.*?\b(\d+) files", frame)
        assert m, f"a frame without phase or file count: {frame!r}"
        shown.append((m.group(1), int(m.group(2))))
    return code, shown


def test_progress_names_each_phase_in_order_and_never_counts_back(airlock, sim, home, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    for i in range(12):
        sim.add_target(f"fw/part-{i}.bin", bytes([i]) * 70_000)
    sim.publish()
    media = sim.write_bundle(tmp_path / "usb")
    code, shown = _import_on_a_terminal(home, media)
    assert code == 0
    phases = [p for i, (p, _) in enumerate(shown) if i == 0 or shown[i - 1][0] != p]
    assert phases == ["copying metadata", "verifying", "copying targets", "publishing"]
    counts = [n for _, n in shown]
    assert counts == sorted(counts), counts
    metadata_files = len(sim.metadata)
    assert dict(shown)["verifying"] == metadata_files
    assert counts[-1] == metadata_files + 12


def test_a_refused_import_stops_the_bar_before_publishing(airlock, sim, home, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("fw/a.bin", b"A" * 5000)
    sim.publish()
    media = sim.write_bundle(tmp_path / "usb")
    (target,) = (media / "airlock/acme/targets/fw").iterdir()
    target.write_bytes(b"B" * 5000)
    code, shown = _import_on_a_terminal(home, media)
    assert code == 1
    assert "publishing" not in {p for p, _ in shown}
    assert [p for p, _ in shown][-1] == "copying targets"
