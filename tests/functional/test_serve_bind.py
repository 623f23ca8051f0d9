"""`airlock serve` on an address it cannot listen on (issue 8, defect 5):
one `airlock: error:` line naming the address and what to do, a non-zero
exit, no "serving on" line and no mDNS process.  Run in a private network
namespace with mDNS on, beside a control: the same `airlock serve` on a free
port does start mDNS and says so in its log, so the absence of that line
means something."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.netns import ROOT, require

SCENARIO = r'''
import json, os, socket, subprocess, sys, time
from tests.support.netns import setup_loopback
from tests.support.server import free_port, wait_until_answers

setup_loopback()
home, log = sys.argv[1], sys.argv[2]
env = dict(os.environ, AIRLOCK_HOME=home, AIRLOCK_MDNS_ENABLED="1", AIRLOCK_LOG_LEVEL="INFO")
busy = socket.socket()
busy.bind(("127.0.0.1", 0))
busy.listen()
port = busy.getsockname()[1]
refused = subprocess.run([sys.executable, "-m", "appliance.cli", "serve", "--bind", f"127.0.0.1:{port}"],
                         env=env, capture_output=True, text=True, timeout=60)
# an address this machine does not have (the namespace has loopback only)
foreign = subprocess.run([sys.executable, "-m", "appliance.cli", "serve", "--bind", "10.9.9.9:8080"],
                         env=env, capture_output=True, text=True, timeout=60)

# the control: a free port, the same command
free = free_port()
with open(log, "w") as out:
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--bind", f"127.0.0.1:{free}",
                             "--workers", "1", "--threads", "2"], env=env, stdout=out, stderr=subprocess.STDOUT)
try:
    wait_until_answers(proc, f"http://127.0.0.1:{free}/healthz", what="airlock serve", timeout=30)
    deadline = time.monotonic() + 30
    while "mDNS process" not in open(log).read() and time.monotonic() < deadline:
        time.sleep(0.1)
finally:
    proc.terminate()
    proc.wait(timeout=30)
print(json.dumps({"port": port, "code": refused.returncode, "stdout": refused.stdout, "stderr": refused.stderr,
                  "foreign": [foreign.returncode, foreign.stderr],
                  "control": open(log).read()}))
'''


def test_an_address_in_use_is_one_error_line_and_nothing_started(home, tmp_path):
    require("unshare", "ip")
    proc = subprocess.run(["unshare", "--net", sys.executable, "-c", SCENARIO, str(home),
                           str(tmp_path / "control.log")], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(proc.stdout.splitlines()[-1])

    assert "mDNS process" in r["control"] and "serving on" in r["control"], r["control"][-3000:]

    lines = r["stderr"].splitlines()
    assert r["code"] != 0
    assert len(lines) == 1, r["stderr"]
    assert lines[0].startswith(f"airlock: error: cannot listen on 127.0.0.1:{r['port']}: "
                               "the address is already in use"), lines
    assert "another port" in lines[0]
    assert "mDNS" not in r["stderr"] and "serving on" not in r["stderr"]
    assert r["stdout"] == ""

    code, stderr = r["foreign"]
    assert code != 0
    assert stderr.splitlines() == ["airlock: error: cannot listen on 10.9.9.9:8080: 10.9.9.9 is not an address of this "
                                   "machine: give --bind (or the bind setting) one of its addresses"]
