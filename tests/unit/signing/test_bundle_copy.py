"""The staging copy: hashes what it writes, stops at the signed length,
turns media and disk failures into clear refusals, in both the one-thread
and the pipelined (two-thread) paths."""

import hashlib
import io
import os

import pytest

from signing.bundle import (
    PIPELINE_MIN,
    BundleLimits,
    UnsafeBundleError,
    _Budget,
    _copy,
    _copy_pipelined,
)


def budget():
    return _Budget(BundleLimits(), None, None)


@pytest.mark.parametrize("size", [0, 1, 1 << 20, PIPELINE_MIN + 12345])
def test_copy_hashes_what_it_writes(tmp_path, size):
    data = os.urandom(1 << 16) * (size // (1 << 16)) + os.urandom(size % (1 << 16))
    copied = _copy(io.BytesIO(data), tmp_path / "f", "f", max(size, PIPELINE_MIN), ["sha256", "sha512"], budget())
    assert (tmp_path / "f").read_bytes() == data
    assert copied.size == size
    assert copied.hashes == {"sha256": hashlib.sha256(data).hexdigest(), "sha512": hashlib.sha512(data).hexdigest()}


@pytest.mark.parametrize("cap", [10, PIPELINE_MIN])
def test_copy_stops_past_the_signed_length(tmp_path, cap):
    with pytest.raises(UnsafeBundleError, match="longer than"):
        _copy(io.BytesIO(b"x" * (cap + 1)), tmp_path / "f", "f", cap, ["sha256"], budget())


def test_disk_full_in_the_writer_thread_is_a_clear_refusal():
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as exc:
            _copy_pipelined(io.BytesIO(b"x" * (PIPELINE_MIN + 1)), fd, "f", PIPELINE_MIN * 2,
                            {"sha256": hashlib.sha256()}, budget())
        assert exc.value.errno == 28  # ENOSPC: _copy turns it into "disk filled up"
    finally:
        os.close(fd)
