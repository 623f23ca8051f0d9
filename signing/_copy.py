"""Copying untrusted bytes into staging: hashed while copied, capped, in
constant memory, with the read, hash and write steps overlapped.

Used by :mod:`signing.bundle`; errors are refusals a person can act on.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import io
import os
import queue
import tarfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from signing.exceptions import UnsafeBundleError
from signing.paths import show

CHUNK = 1024 * 1024  # bytes read and hashed at a time

# The phases of an import, in order, as a progress bar names them.
PHASE_METADATA = "copying metadata"  # first pass: every entry checked, metadata copied
PHASE_VERIFY = "verifying"  # the metadata, role by role (no bytes copied)
PHASE_TARGETS = "copying targets"  # second pass: the target files, hashed while copied
PHASE_PUBLISH = "publishing"  # the appliance's own step, after verification


class Progress(Protocol):
    """``progress(bytes_done, bytes_total, files_done, phase=...)``.

    ``files_done`` counts the files copied into staging so far, across the
    phases: it never goes back.  The byte counts are those of the current
    phase (``bytes_total`` None when unknown).
    """

    def __call__(self, done: int, total: int | None, files: int, *, phase: str | None = None) -> None: ...


@dataclass(frozen=True)
class BundleLimits:
    """Caps that keep a hostile bundle from exhausting the appliance."""

    max_files: int = 200_000  # entries, files and folders
    max_total_bytes: int = 1 << 40  # bytes of file content, all files
    max_depth: int = 32  # folder levels
    max_seconds: float = 6 * 3600.0  # wall time for each pass over the bundle


@dataclass(frozen=True)
class StagedFile:
    """A file copied into staging: the appliance's own copy."""

    relpath: str  # inside the bundle root, '/'-separated
    path: Path
    size: int  # bytes
    hashes: dict[str, str]  # algorithm -> hex digest, computed while copying


class _Budget:
    """Counts what has been read, refuses past the limits and reports
    progress for one pass (``phase``); ``files_done`` is carried over from
    the passes before, so the file count never goes back."""

    def __init__(self, limits: BundleLimits, progress: Progress | None, total: int | None, *,
                 phase: str = PHASE_METADATA, files_done: int = 0):
        self.limits = limits
        self.files = 0  # entries seen, for the limit
        self.copied = files_done  # files copied into staging, for the progress bar
        self.phase = phase
        self.declared = 0
        self.bytes = 0
        self.progress = progress
        self.total = total
        self.deadline = time.monotonic() + limits.max_seconds
        self.last_report = 0.0

    def entry(self, name: str) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise UnsafeBundleError(
                f"bundle has more than {self.limits.max_files} entries; refused "
                "(a bundle needs one file per metadata version and target)")
        if name.count("/") >= self.limits.max_depth:
            raise UnsafeBundleError(f"{show(name)} is nested deeper than {self.limits.max_depth} folders; refused")
        self.check_time()

    def declare(self, name: str, size: int) -> None:
        self.declared += size
        if self.declared > self.limits.max_total_bytes:
            raise UnsafeBundleError(
                f"bundle is larger than {self.limits.max_total_bytes} bytes (at {show(name)}); refused")

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise UnsafeBundleError(f"reading the bundle took longer than {self.limits.max_seconds:.0f} s; refused")

    def add(self, n: int) -> None:
        self.bytes += n
        self.check_time()
        self.report()

    def file_copied(self) -> None:
        self.copied += 1
        self.report()

    def report(self, done: int | None = None, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress and (force or now - self.last_report > 0.1):
            self.last_report = now
            self.progress(self.bytes if done is None else done, self.total, self.copied, phase=self.phase)


def _new_hash(algorithm: str):
    """A hashlib object for a TUF hash algorithm name; ValueError if unknown."""
    if algorithm == "blake2b-256":
        return hashlib.blake2b(digest_size=32)
    if algorithm not in hashlib.algorithms_guaranteed or algorithm.startswith("shake"):
        raise ValueError(algorithm)
    return hashlib.new(algorithm)


PIPELINE_MIN = 16 * 1024 * 1024  # bytes; smaller files are copied on one thread
PIPELINE_CHUNK = 4 * 1024 * 1024  # bytes per buffer in the pipelined copy
PIPELINE_DEPTH = 6  # buffers in flight: bounds the copy's memory at DEPTH buffers


def _copy(src, dest: Path, name: str, cap: int, algorithms, budget: _Budget) -> StagedFile:
    """Copy at most ``cap`` bytes of ``src`` into the new file ``dest``,
    hashing on the way; refuse a source longer than ``cap``."""
    hashers = {a: _new_hash(a) for a in algorithms}
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        if cap >= PIPELINE_MIN:
            size = _copy_pipelined(src, fd, name, cap, hashers, budget)
        else:
            size = _copy_serial(src, fd, name, cap, hashers, budget)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise UnsafeBundleError("the appliance's disk filled up while staging the bundle; free space in the "
                                    "appliance home and import again") from None
        raise
    finally:
        os.close(fd)
    budget.file_copied()
    return StagedFile(relpath=name, path=dest, size=size, hashes={a: h.hexdigest() for a, h in hashers.items()})


def _read_some(src, view, name: str, size: int) -> int:
    try:
        return src.readinto(view)
    except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
        raise UnsafeBundleError(f"read error in {show(name)} after {size} bytes "
                                f"({getattr(exc, 'strerror', None) or exc}): the media may be damaged; "
                                "copy the bundle again") from None


def _write_all(fd: int, chunk) -> None:
    while chunk:
        chunk = chunk[os.write(fd, chunk):]


def _copy_serial(src, fd: int, name: str, cap: int, hashers, budget: _Budget) -> int:
    size = 0
    view = memoryview(bytearray(CHUNK))
    while True:
        n = _read_some(src, view[: min(CHUNK, cap + 1 - size)], name, size)
        if not n:
            return size
        size += n
        if size > cap:
            raise UnsafeBundleError(f"{show(name)} is longer than the {cap} bytes expected; refused")
        chunk = view[:n]
        for h in hashers.values():
            h.update(chunk)
        _write_all(fd, chunk)
        budget.add(n)


def _copy_pipelined(src, fd: int, name: str, cap: int, hashers, budget: _Budget) -> int:
    """Read, hash and write on three threads: file I/O and hashlib release
    the GIL, so the three overlap on two cores.  Buffers are recycled, so
    memory stays at a few buffers whatever the file's size."""
    free: queue.Queue = queue.Queue()
    to_hash: queue.Queue = queue.Queue()
    to_write: queue.Queue = queue.Queue()
    for _ in range(PIPELINE_DEPTH):
        free.put(bytearray(PIPELINE_CHUNK))
    failure: list[BaseException] = []
    stop = threading.Event()
    _advise_sequential(src)

    def reader() -> None:
        size = 0
        try:
            while not stop.is_set():
                buf = free.get()
                if buf is None:
                    break
                n = _read_some(src, memoryview(buf)[: min(PIPELINE_CHUNK, cap + 1 - size)], name, size)
                if not n:
                    break
                size += n
                if size > cap:
                    raise UnsafeBundleError(f"{show(name)} is longer than the {cap} bytes expected; refused")
                to_hash.put((buf, n))
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            failure.append(exc)
        to_hash.put(None)

    def writer() -> None:
        offset = 0
        while True:
            item = to_write.get()
            if item is None:
                return
            buf, n = item
            try:
                if not failure:
                    _write_all(fd, memoryview(buf)[:n])
                    _start_writeback(fd, offset, n)
                    offset += n
            except BaseException as exc:  # noqa: BLE001
                failure.append(exc)
                stop.set()
            free.put(buf)

    threads = [threading.Thread(target=reader, name="airlock-stage-reader", daemon=True),
               threading.Thread(target=writer, name="airlock-stage-writer", daemon=True)]
    for t in threads:
        t.start()
    size = 0
    try:
        while True:
            item = to_hash.get()
            if item is None:
                break
            buf, n = item
            chunk = memoryview(buf)[:n]
            for h in hashers.values():
                h.update(chunk)
            size += n
            to_write.put((buf, n))
            budget.add(n)
    finally:
        stop.set()
        free.put(None)  # wakes a reader waiting for a buffer
        to_write.put(None)
        for t in threads:
            t.join()
    if failure:
        raise failure[0]
    return size


def _advise_sequential(src) -> None:
    """Ask the kernel for a larger read-ahead on a file read front to back."""
    with contextlib.suppress(AttributeError, OSError, ValueError, io.UnsupportedOperation):
        os.posix_fadvise(src.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)


def _load_sync_file_range():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sync_file_range
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        return fn
    except (OSError, AttributeError):
        return None


_SYNC_FILE_RANGE = _load_sync_file_range()
SYNC_FILE_RANGE_WRITE = 2  # start writeback of dirty pages, do not wait


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing the chunk to disk now (Linux), so dirty pages do not
    pile up and throttle the copy, and the publish step's fsync is short."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, length, SYNC_FILE_RANGE_WRITE)
