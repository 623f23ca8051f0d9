"""`airlock export` end to end, read back by the vendor's verifier
(`airlock-sign export ...`): real exports of a real appliance, on a real
file system, tampered with in every way the vendor must notice."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

from tests.conftest import run_airlock, sign_cli
from tests.functional.export.conftest import (
    ATTACHMENT,
    HOSTILE_MESSAGE,
    VENDOR_PASSPHRASE,
    newest,
)
from tests.support import homedb


def export(site, dest: Path, *args):
    dest.mkdir(exist_ok=True)
    r = site.airlock("export", dest, *args)
    assert r.code == 0, r.err
    return newest(dest)


def export_everything(site, dest: Path) -> Path:
    """An export of the whole history: the first, or a re-export since 1."""
    con = site.db()
    done = con.execute("SELECT COUNT(*) FROM export_record").fetchone()[0]
    con.close()
    return export(site, dest, *(("--since", 1) if done else ()))


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines()]


def rewrite(src: Path, dest: Path, change) -> Path:
    """A copy of the export with ``change(members)`` applied (a dict, in order)."""
    files = members(src)
    change(files)
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest


def refused(site, path: Path, *more) -> str:
    code, out, err = sign_cli("export", "verify", path, "--appliance-key", site.appliance_pub(), *more)
    assert code == 1, out
    line = err.strip()
    assert line.startswith("airlock-sign: error: ") and "\n" not in line
    return line


def test_an_export_holds_the_history_and_verifies(site, tmp_path):
    path = export_everything(site, tmp_path / "usb")
    files = members(path)
    manifest = json.loads(files["manifest.json"])
    appliance = (site.home / "appliance-id").read_text().strip()
    assert path.name == f"airlock-export-{appliance}-{manifest['sequence']:06d}.tar"
    code, out, err = sign_cli("export", "verify", path, "--appliance-key", site.appliance_pub())
    assert code == 0, err
    assert out.startswith(f"OK: export {manifest['sequence']}") and "signature valid" in out
    assert list(files)[:3] == ["manifest.json", "manifest.sig", "appliance.pub"]
    # the appliance's timestamp key reaches the vendor in the form airlock-sign authorize-appliance takes
    assert files["timestamp-key.json"].decode() == site.airlock("keys", "show", "--timestamp").out
    assert load_public_key_bytes(files["timestamp-key.json"], tmp_path).keyid == \
        json.loads(files["timestamp-key.json"])["keyid"]
    if manifest["sequence"] == 1:
        assert manifest["previous_manifest_sha256"] is None and manifest["re_export_since"] is None
    devices = {d["device"]: d for d in jsonl(files["devices.jsonl"])}
    assert set(devices) == {"exp-0", "exp-1", "exp-2", "exp-late"}
    assert devices["exp-0"]["health"] == ["hot"] and devices["exp-late"]["state"] == "decommissioned"
    assert not any("token" in key and key != "token_issued_at" for d in devices.values() for key in d)
    health = jsonl(files["health.jsonl"])
    mine = [h for h in health if h["device"] == "exp-0"]
    assert {h["resolution"] for h in mine} == {"hour"} and len(mine) >= 2
    rolled = [h for h in mine if h["metrics"].get("cpu_temp_c", {}).get("count") == 6]
    assert rolled and rolled[0]["metrics"]["cpu_temp_c"]["min"] == 40
    samples = jsonl(files["samples.jsonl"])
    assert {s["device"] for s in samples} >= {"exp-0", "exp-1"}
    assert any("health" in s["incidents"] for s in samples) and any("update_failure" in s["incidents"]
                                                                    for s in samples)
    updates = jsonl(files["update_reports.jsonl"])
    assert [(u["device"], u["step"], u["version"]) for u in updates] == [("exp-1", "failure", "2.0.0")]
    reports = jsonl(files["reports.jsonl"])
    assert len(reports) == 1 and reports[0]["device"] == "exp-2"
    attachment = jsonl(files["report_attachments.jsonl"])[0]
    assert files[attachment["file"]] == ATTACHMENT
    actions = [a["action"] for a in jsonl(files["audit.jsonl"])]
    for action in ("repository.pin", "import.accepted", "device.accept", "release.approve", "device.decommission"):
        assert action in actions
    assert [i["status"] for i in jsonl(files["imports.jsonl"])] == ["accepted"]


def test_report_text_stays_data(site, tmp_path):
    path = export_everything(site, tmp_path / "usb")
    raw = path.read_bytes()
    for bad in ("\x9b".encode(), "\u202e".encode()):  # C1 CSI and a bidi override, as UTF-8
        assert bad not in raw
    message = jsonl(members(path)["reports.jsonl"])[0]["message"]
    assert "HYPERLINK" in message  # kept, as data, for the vendor
    code, out, _ = sign_cli("export", "show", path)
    assert code == 0 and "\x9b" not in out and "\u202e" not in out
    assert HOSTILE_MESSAGE  # the report carried it in


def test_no_secrets_leave_the_appliance(site, tmp_path):
    path = export_everything(site, tmp_path / "usb")
    out = tmp_path / "unpacked"
    code, _, err = sign_cli("export", "unpack", path, out, "--appliance-key", site.appliance_pub())
    assert code == 0, err
    blobs = [("export file", path.read_bytes())]
    blobs += [(str(p), p.read_bytes()) for p in out.rglob("*") if p.is_file()]
    assert len(blobs) > 10
    for what, secret in site.secrets.items():
        assert len(secret) >= 16, what
        for where, data in blobs:
            assert secret not in data, f"{what} found in {where}"
            assert secret.hex().encode() not in data, f"{what} (hex) found in {where}"


def test_exports_are_incremental_and_chained(site, tmp_path):
    usb = tmp_path / "usb"
    first = export(site, usb)
    second = export(site, usb)
    third = export(site, usb)
    one, two, three = (json.loads(members(p)["manifest.json"]) for p in (first, second, third))
    assert two["sequence"] == one["sequence"] + 1 == three["sequence"] - 1
    assert jsonl(members(second)["update_reports.jsonl"]) == []  # already exported
    assert [a["action"] for a in jsonl(members(second)["audit.jsonl"])] == ["export.written"]
    key = site.appliance_pub()
    code, out, err = sign_cli("export", "verify", second, "--appliance-key", key, "--previous", first)
    assert code == 0 and f"follows export {one['sequence']}" in out, err
    # the previous export's manifest alone is enough
    (tmp_path / "m.json").write_bytes(members(first)["manifest.json"])
    assert sign_cli("export", "verify", second, "--appliance-key", key, "--previous", tmp_path / "m.json")[0] == 0
    assert "replayed or older export" in refused(site, first, "--previous", second)
    assert f"export {two['sequence']} is missing" in refused(site, third, "--previous", first)
    # a re-export since the first: a new number, marked, with the old data again
    again = export(site, usb, "--since", 1)
    manifest = json.loads(members(again)["manifest.json"])
    assert manifest["re_export_since"] == 1 and manifest["sequence"] == three["sequence"] + 1
    assert len(jsonl(members(again)["update_reports.jsonl"])) == 1
    code, out, err = sign_cli("export", "verify", again, "--appliance-key", key, "--previous", third)
    assert code == 0 and "re-export since export" in out, err


def test_tampering_is_detected(site, tmp_path):
    good = export(site, tmp_path / "usb")

    def flip(files):
        data = bytearray(files["devices.jsonl"])
        data[10] ^= 0x01
        files["devices.jsonl"] = bytes(data)
    assert "devices.jsonl has sha256" in refused(site, rewrite(good, tmp_path / "flip.tar", flip))
    assert "missing from the export (dropped)" in refused(
        site, rewrite(good, tmp_path / "drop.tar", lambda f: f.pop("samples.jsonl")))
    assert "not in the signed manifest (added)" in refused(
        site, rewrite(good, tmp_path / "add.tar", lambda f: f.update({"extra.jsonl": b"{}\n"})))

    def edit_manifest(files):
        files["manifest.json"] = files["manifest.json"].replace(b'"sequence": ', b'"sequence": 9')
    assert "manifest.sig does not verify" in refused(site, rewrite(good, tmp_path / "man.tar", edit_manifest))
    raw = bytearray(good.read_bytes())
    with tarfile.open(good) as tar:
        member = tar.getmember("devices.jsonl")
    raw[member.offset_data + member.size // 2] ^= 0xFF  # inside one file's data, straight on the bytes
    (tmp_path / "raw.tar").write_bytes(raw)
    assert refused(site, tmp_path / "raw.tar")
    # an export from another appliance, checked against this appliance's key
    other = tmp_path / "other-home"
    assert run_airlock(other, "init").code == 0
    (tmp_path / "usb2").mkdir()
    assert run_airlock(other, "export", tmp_path / "usb2").code == 0
    line = refused(site, newest(tmp_path / "usb2"))
    assert "another appliance" in line


def test_encrypted_export(site, tmp_path, monkeypatch):
    usb = tmp_path / "usb"
    path = export(site, usb, "--encrypt-for", "acme")
    assert path.name.endswith(".tar.enc")
    raw = path.read_bytes()
    assert b"exp-0" not in raw and ATTACHMENT[:20] not in raw and b"manifest" not in raw
    monkeypatch.setenv("AIRLOCK_SIGN_PASSPHRASE", VENDOR_PASSPHRASE.decode())
    key = site.appliance_pub()
    code, out, err = sign_cli("export", "verify", path, "--appliance-key", key, "--decrypt-key", site.vendor_key)
    assert code == 0 and "OK: export" in out, err
    code, out, err = sign_cli("export", "unpack", path, tmp_path / "out", "--appliance-key", key,
                              "--decrypt-key", site.vendor_key)
    assert code == 0 and (tmp_path / "out" / "devices.jsonl").exists(), err
    assert "is encrypted: give the vendor's export key" in refused(site, path)
    for cut in (len(raw) - 1, len(raw) - 17, len(raw) // 2, 89):
        (tmp_path / "cut.enc").write_bytes(raw[:cut])
        assert "fails authentication" in refused(site, tmp_path / "cut.enc", "--decrypt-key", site.vendor_key)
    flipped = bytearray(raw)
    flipped[500] ^= 1
    (tmp_path / "flip.enc").write_bytes(flipped)
    assert "fails authentication" in refused(site, tmp_path / "flip.enc", "--decrypt-key", site.vendor_key)
    from signing.export import generate_export_key

    generate_export_key(tmp_path / "other.key", VENDOR_PASSPHRASE)
    assert "encrypted to another key" in refused(site, path, "--decrypt-key", tmp_path / "other.key")


def test_names_on_the_stick_are_never_followed_or_overwritten(site, tmp_path):
    usb = tmp_path / "usb"
    usb.mkdir()
    con = site.db()
    nxt = con.execute("SELECT COALESCE(MAX(sequence), 0) + 1 FROM export_record").fetchone()[0]
    appliance = (site.home / "appliance-id").read_text().strip()
    con.close()
    final = usb / f"airlock-export-{appliance}-{nxt:06d}.tar"
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    final.symlink_to(victim)
    r = site.airlock("export", usb)
    assert r.code == 1 and "exists on the media already" in r.err
    assert victim.read_text() == "keep me" and final.is_symlink()
    assert sorted(os.listdir(usb)) == [final.name]  # no partial file left behind
    final.unlink()
    link = tmp_path / "usb-link"
    link.symlink_to(usb)
    r = site.airlock("export", link)
    assert r.code == 1 and "symbolic link" in r.err


def test_a_pulled_stick_leaves_no_file_and_no_record(site, tmp_path, monkeypatch):
    """Fault injection: the media fails (EIO) part way through the file."""
    import errno

    from appliance.export import media

    usb = tmp_path / "usb"
    usb.mkdir()
    (usb / "earlier.tar").write_bytes(b"an earlier export")
    real_write = media.MediaFile.write

    def failing(self, data):
        if self.written > 3000:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_write(self, data)

    monkeypatch.setattr(media.MediaFile, "write", failing)
    before = site.db().execute("SELECT COUNT(*) FROM export_record").fetchone()[0]
    r = site.airlock("export", usb)
    assert r.code == 1 and "was the stick pulled out?" in r.err and "\n" not in r.err.strip()
    assert os.listdir(usb) == ["earlier.tar"] and (usb / "earlier.tar").read_bytes() == b"an earlier export"
    assert site.db().execute("SELECT COUNT(*) FROM export_record").fetchone()[0] == before


_SMALL_FS = r"""
import json, os, subprocess, sys
dest, home = sys.argv[1], sys.argv[2]
cmd = [sys.executable, "-m", "appliance.cli", "--home", home, "export", dest]
first = subprocess.run(cmd, capture_output=True, text=True)
names = sorted(os.listdir(dest))
data = open(os.path.join(dest, names[0]), "rb").read() if names else b""
with open(os.path.join(dest, "filler"), "wb", buffering=0) as f:  # then leave a few kB free
    try:
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    except OSError:
        pass
os.truncate(os.path.join(dest, "filler"), os.path.getsize(os.path.join(dest, "filler")) - 8192)
second = subprocess.run(cmd, capture_output=True, text=True)
after = open(os.path.join(dest, names[0]), "rb").read() if names else b""
print(json.dumps({"first": [first.returncode, first.stderr], "second": [second.returncode, second.stderr],
                  "before": names, "after": sorted(os.listdir(dest)), "intact": data == after and bool(data)}))
"""


def test_a_full_stick_leaves_earlier_exports_intact(site, tmp_path):
    import subprocess
    import sys

    usb = tmp_path / "usb"
    usb.mkdir()
    script = 'mount -t tmpfs -o size=512k tmpfs "$1" && exec "$2" -c "$3" "$1" "$4"'
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(usb), sys.executable, _SMALL_FS,
                           str(site.home)], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["first"][0] == 0, result
    code, err = result["second"]
    assert code == 1 and "the export media is full" in err and err.count("\n") == 1, err
    assert result["after"] == result["before"] + ["filler"] and result["intact"], result


def test_audit_log_verify_detects_tampering(airlock, home, tmp_path):
    (tmp_path / "usb").mkdir()
    for _ in range(3):
        assert airlock("export", tmp_path / "usb").code == 0
    r = airlock("audit", "verify")
    assert r.code == 0 and r.out.startswith("3 records, chain intact"), r.err
    r = airlock("audit", "list", "--json", "--since", "1")
    assert [json.loads(line)["id"] for line in r.out.splitlines()] == [2, 3]
    con = homedb.connect(home)
    con.execute("UPDATE audit_log SET actor = 'mallory' WHERE id = 2")
    con.commit()
    r = airlock("audit", "verify")
    assert r.code == 1 and "audit record 2" in r.err and "changed" in r.err, r.err
    con.execute("UPDATE audit_log SET actor = (SELECT actor FROM audit_log WHERE id = 1) WHERE id = 2")
    con.execute("DELETE FROM audit_log WHERE id = 2")
    con.commit()
    con.close()
    r = airlock("audit", "verify")
    assert r.code == 1 and "audit record 3" in r.err and "removed or inserted" in r.err, r.err


def test_keys_show_and_the_key_file(airlock, home):
    r = airlock("keys", "show")
    appliance = (home / "appliance-id").read_text().strip()
    assert r.code == 0 and f"# airlock appliance {appliance}" in r.out and "BEGIN PUBLIC KEY" in r.out
    assert (os.stat(home / "appliance-key.pem").st_mode & 0o777) == 0o600
    before = (home / "appliance-key.pem").read_bytes()
    assert airlock("init").code == 0
    assert (home / "appliance-key.pem").read_bytes() == before
    assert json.loads(airlock("keys", "show", "--json").out)["appliance_id"] == appliance


def test_rollups_on_the_fly_match_maintenance():
    """The export's raw-sample rollup folds exactly what the appliance's own
    maintenance would (same metrics, same min/max/sum/count)."""
    from server.devices.maintenance import as_rollup, merge
    from server.exports.collect import _accumulate

    samples = [{"uptime_s": 5, "cpu_temp_c": 41.5, "ok": True, "name": "x", "gauges": {"fan": 1200, "on": False},
                "error_counters": {"crc": 3}, "other": {"skip": 1}},
               {"uptime_s": 9, "cpu_temp_c": 39, "gauges": {"fan": 1100}, "error_counters": {"crc": 4, "io": 0}},
               {"cpu_temp_c": 44}]
    mine, theirs = {}, {}
    for s in samples:
        _accumulate(mine, s)
        merge(theirs, as_rollup(0, s))
    assert mine == theirs


def test_refusals_are_one_line(site, tmp_path):
    (tmp_path / "file").write_text("x")
    for args, reason in (((tmp_path / "missing",), "does not exist"),
                         ((tmp_path / "file",), "is not a folder"),
                         ((tmp_path, "--since", "999"), "there is no export 999"),
                         ((tmp_path, "--encrypt-for", "nope"), "no repository named 'nope'")):
        r = site.airlock("export", *args)
        assert r.code == 1 and reason in r.err and r.err.count("\n") == 1, r.err
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def load_public_key_bytes(data: bytes, folder: Path):
    from signing.keys import load_public_key

    path = folder / "timestamp-key-from-export.json"
    path.write_bytes(data)
    return load_public_key(path)
