"""The install hook the agent tests configure: records the file it was given
(path, SHA-256 of its content, size) and the environment the agent set.
The agent records the new version itself after exit 0.  With
HOOK_WAIT set, it first signals HOOK_WAIT.started and waits for HOOK_WAIT."""

import hashlib
import json
import os
import sys
import time
from pathlib import Path

path = Path(sys.argv[1])
data = path.read_bytes()
wait = os.environ.get("HOOK_WAIT")
if wait:
    Path(wait + ".started").write_text("")
    deadline = time.monotonic() + 30
    while not Path(wait).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
with open(os.environ["HOOK_OUT"], "a") as out:
    out.write(json.dumps({"path": str(path), "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                          "target": os.environ["AIRLOCK_TARGET"], "version": os.environ["AIRLOCK_VERSION"],
                          "release_id": os.environ["AIRLOCK_RELEASE_ID"]}) + "\n")
sys.exit(int(os.environ.get("HOOK_EXIT", "0")))
