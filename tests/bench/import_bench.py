"""Import throughput and peak memory against hashing the same files.

``airlock import`` runs in a subprocess of its own, which reports its peak
RSS (``VmHWM``) as it exits.  (A child's ``ru_maxrss`` would not do: it counts
the RSS of the parent it was forked from.)  The reference is
``hashlib.file_digest(f, "sha256")`` over the same files in the same run:
import cannot be faster than hashing what it imports.  With a cold page
cache, the bundle is cold for both, and Airlock's own code is loaded once
before the import is timed (``warm_code``), as on an appliance in use.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

from tests.bench.bundle import Payload, link_payloads, signed_bundle, write_payloads
from tests.bench.common import REPO_ROOT, drop_page_cache, log, new_home, read_through

REPO = "bench"
FILE_SIZE = 256 << 20


@dataclass
class ImportRun:
    bytes: int
    files: int
    seconds: list[float] = field(default_factory=list)  # one per repetition
    peak_rss: list[int] = field(default_factory=list)  # bytes, one per repetition
    hash_seconds: list[float] = field(default_factory=list)  # hashlib over the same files
    write_seconds: list[float] = field(default_factory=list)  # writing as many bytes durably (fdatasync)

    @property
    def write_gbps(self) -> float:
        return self.bytes / median(self.write_seconds) / 1e9 if self.write_seconds else 0.0

    @property
    def gbps(self) -> float:
        return self.bytes / median(self.seconds) / 1e9

    @property
    def hash_gbps(self) -> float:
        return self.bytes / median(self.hash_seconds) / 1e9

    def spread(self, samples: list[float]) -> tuple[float, float]:
        """(lowest, highest) GB/s over the repetitions."""
        return self.bytes / max(samples) / 1e9, self.bytes / min(samples) / 1e9


@dataclass
class ImportFigures:
    cache: str  # "cold: ..." or "warm: ..."
    repeat: int
    small: ImportRun
    big: ImportRun


def durable_write(scratch: Path, size: int) -> float:
    """Seconds to write ``size`` bytes to the appliance's disk and fdatasync
    them: an import must write every byte it publishes, durably, so this is
    the disk's own bound on import speed."""
    block = os.urandom(4 << 20)
    path = scratch / "durable-write.bin"
    t = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        left = size
        while left > 0:
            left -= os.write(fd, block[: min(len(block), left)])
        os.fdatasync(fd)
    finally:
        os.close(fd)
        path.unlink()
    return time.perf_counter() - t


def hash_files(payloads: list[Payload], cold: bool) -> list[float]:
    """Seconds to ``hashlib.file_digest`` each file (checked against its name)."""
    if cold:
        drop_page_cache()
    times = []
    for p in payloads:
        t = time.perf_counter()
        with open(p.file, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        times.append(time.perf_counter() - t)
        if digest != p.sha256:
            raise RuntimeError(f"{p.file} hashes to {digest}, expected {p.sha256}")
    return times


# `airlock ARGS`, as `python -m appliance.cli` runs it, then its peak RSS written to a file.
_CHILD = """\
import sys
from appliance.cli import main
code = main(sys.argv[2:])
with open("/proc/self/status") as f, open(sys.argv[1], "w") as out:
    out.write("".join(line for line in f if line.startswith("VmHWM:")))
sys.exit(code)
"""


def warm_code() -> None:
    """Load Airlock's own code (and the libraries it imports) once, so that
    the page cache holds it as on an appliance in use.  Dropping the page
    cache for a cold bundle drops the interpreter's modules too, and reading
    them back cost the import about a second here, which is no part of
    importing a bundle.  The bundle's files stay cold."""
    subprocess.run([sys.executable, "-c", "import appliance.cli, appliance.importer, signing.bundle, "
                    "signing.report"], check=True, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, timeout=120)


def _peak_rss(path: Path) -> int:
    text = path.read_text().split()
    if len(text) != 3 or text[2] != "kB":
        raise RuntimeError(f"no VmHWM from the import process: {text}")
    return int(text[1]) * 1024


def timed_import(home: Path, media: Path, log_file: Path, timeout: float) -> tuple[float, int, str]:
    """(seconds, peak RSS in bytes, stdout) of ``airlock import MEDIA``."""
    hwm = log_file.with_suffix(".hwm")
    cmd = [sys.executable, "-c", _CHILD, str(hwm), "--home", str(home), "import", str(media)]
    with open(log_file, "w+") as out:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT)
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:  # polled every 5 ms: Popen.wait(timeout) would sleep up to 50 ms
                if time.monotonic() > deadline:
                    raise RuntimeError(f"airlock import took more than {timeout:.0f} s; killed")
                time.sleep(0.005)
        finally:
            if proc.returncode is None:  # timed out, or the benchmark itself was interrupted
                proc.kill()
                proc.wait()
        seconds = time.perf_counter() - t
        out.seek(0)
        text = out.read()
    if proc.returncode != 0 or "imported" not in text:
        raise RuntimeError(f"airlock import failed ({proc.returncode}): {text.strip()[-500:]}")
    return seconds, _peak_rss(hwm), text.strip()


def _import_once(scratch: Path, label: str, media: Path, payloads: list[Payload], root: bytes,
                 cold: bool) -> tuple[float, int]:
    home = new_home(scratch / f"home-{label}", REPO, root)
    if cold:
        drop_page_cache()
        warm_code()
    size = sum(p.length for p in payloads)
    seconds, rss, _ = timed_import(home, media, scratch / f"import-{label}.log", timeout=60 + size / 20e6)
    published = list((home / "public/repos" / REPO / "targets/fw").iterdir())
    if len(published) != len(payloads):
        raise RuntimeError(f"{label}: {len(published)} targets published, expected {len(payloads)}")
    log(f"  airlock import {size / 1e9:.1f} GB: {size / seconds / 1e9:.2f} GB/s, peak RSS {rss / 1e6:.0f} MB")
    shutil.rmtree(home, ignore_errors=True)  # free the disk for the next run
    return seconds, rss


def run(scratch: Path, gigabytes: float, repeat: int = 3) -> ImportFigures:
    count = max(3, round(gigabytes * 1e9 / FILE_SIZE))
    small_count = max(1, count // 3)
    big_media, small_media = scratch / "usb-big", scratch / "usb-small"
    try:
        log(f"writing a bundle of {count} files of {FILE_SIZE >> 20} MiB ({count * FILE_SIZE / 1e9:.1f} GB)")
        payloads = write_payloads(big_media, REPO, count, FILE_SIZE)
        big_sim = signed_bundle(big_media, REPO, payloads)
        small_payloads = link_payloads(small_media, REPO, payloads[:small_count])
        small_sim = signed_bundle(small_media, REPO, small_payloads)
        big = ImportRun(count * FILE_SIZE, count)
        small = ImportRun(small_count * FILE_SIZE, small_count)

        cold = drop_page_cache()
        if cold:
            cache = "cold: page cache dropped before each measurement"
        else:
            cache = "warm: drop_caches not permitted, files read once before measuring"
            read_through([p.file for p in payloads])
        log(f"page cache {cache}")
        # Interleaved, so that a slow spell of a shared disk hits every figure alike.
        for i in range(repeat):
            log(f"round {i + 1} of {repeat}")
            times = hash_files(payloads, cold)
            big.hash_seconds.append(sum(times))
            small.hash_seconds.append(sum(times[:small_count]))
            log(f"  hashlib.file_digest {big.bytes / 1e9:.1f} GB: {big.bytes / sum(times) / 1e9:.2f} GB/s")
            for run_ in (small, big):
                run_.write_seconds.append(durable_write(scratch, run_.bytes))
            log(f"  write + fdatasync {big.bytes / 1e9:.1f} GB: {big.write_gbps:.2f} GB/s")
            for run_, label, media, files, sim in ((small, "small", small_media, small_payloads, small_sim),
                                                  (big, "big", big_media, payloads, big_sim)):
                seconds, rss = _import_once(scratch, label, media, files, sim.first_root(), cold)
                run_.seconds.append(seconds)
                run_.peak_rss.append(rss)
    finally:
        shutil.rmtree(big_media, ignore_errors=True)
        shutil.rmtree(small_media, ignore_errors=True)
    return ImportFigures(cache, repeat, small, big)
