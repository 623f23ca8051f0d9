"""`make demo` end to end: airlock-sign builds, signs and bundles a vendor
repository, airlock pins, imports and serves it, and the printed fetch
command verifies a delegated target with python-tuf."""

import os
import re
import signal
import subprocess
import sys
import time


def test_demo_runs_and_printed_fetch_command_works(tmp_path):
    env = dict(os.environ, AIRLOCK_DEMO_DIR=str(tmp_path / "demo"))
    proc = subprocess.Popen([sys.executable, "-m", "appliance.demo"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    try:
        deadline = time.monotonic() + 120
        base = None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"== serving on (http://127\.0\.0\.1:\d+)/", line)
            if m:
                base = m.group(1)
            if base and "Listening at" in line:
                break
        output = "".join(lines)
        assert base, output
        assert "verdict: OK" in output and "imported: acme" in output
        fetch_cmd = next(l for l in lines if "demo/fetch.py" in l).split()
        assert fetch_cmd[-2:] == [base, "plc-x/plc-x-1.2.0.bin"]
        script = tmp_path / "demo" / "fetch.py"
        result = subprocess.run([sys.executable, str(script), base, "plc-x/plc-x-1.2.0.bin"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "verified plc-x/plc-x-1.2.0.bin: 262144 bytes" in result.stdout
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
