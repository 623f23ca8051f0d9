"""Import throughput and peak memory against hashing the same files.

``airlock import`` runs in a subprocess of its own, so its peak RSS is that
process's ``ru_maxrss`` (from ``wait4``).  The reference is
``hashlib.file_digest(f, "sha256")`` over the same files in the same run:
import cannot be faster than hashing what it imports.
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


def timed_import(home: Path, media: Path, log_file: Path, timeout: float) -> tuple[float, int, str]:
    """(seconds, peak RSS in bytes, stdout) of ``airlock import MEDIA``."""
    cmd = [sys.executable, "-m", "appliance.cli", "--home", str(home), "import", str(media)]
    with open(log_file, "w+") as out:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise RuntimeError(f"airlock import took more than {timeout:.0f} s; killed")
            time.sleep(0.005)
        seconds = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0 or "imported" not in text:
        raise RuntimeError(f"airlock import failed ({proc.returncode}): {text.strip()[-500:]}")
    return seconds, usage.ru_maxrss * 1024, text.strip()


def _import_once(scratch: Path, label: str, media: Path, payloads: list[Payload], root: bytes,
                 cold: bool) -> tuple[float, int]:
    home = new_home(scratch / f"home-{label}", REPO, root)
    if cold:
        drop_page_cache()
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
            for run_, label, media, files, sim in ((small, "small", small_media, small_payloads, small_sim),
                                                  (big, "big", big_media, payloads, big_sim)):
                seconds, rss = _import_once(scratch, label, media, files, sim.first_root(), cold)
                run_.seconds.append(seconds)
                run_.peak_rss.append(rss)
    finally:
        shutil.rmtree(big_media, ignore_errors=True)
        shutil.rmtree(small_media, ignore_errors=True)
    return ImportFigures(cache, repeat, small, big)
