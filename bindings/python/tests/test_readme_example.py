"""net-queue's README example, with only its import changed, runs on nq.

The example uses net-queue's default address, 127.0.0.1:51966, so it runs in
a private network namespace where that port is certainly free."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

SCRIPT = r"""
set -u
ip link set lo up || exit 90
"$PY" "$EXAMPLES/server.py" & server=$!
# Wait until the server listens on 51966 (0xCAFE), without connecting to it.
for _ in $(seq 400); do
    grep -q ':CAFE 00000000:0000 0A' /proc/net/tcp && break
    sleep 0.05
done
"$PY" "$EXAMPLES/client.py"; client=$?
wait "$server"; server=$?
echo "client=$client server=$server"
[ "$client" = 0 ] && [ "$server" = 0 ]
"""


def test_seed_readme_server_and_client_run_unchanged():
    for line in (EXAMPLES / "server.py").read_text().splitlines():
        assert "net_queue" not in line
    assert shutil.which("unshare"), "unshare (util-linux) is needed"
    env = dict(os.environ, PY=sys.executable, EXAMPLES=str(EXAMPLES))
    done = subprocess.run(["unshare", "--net", "bash", "-c", SCRIPT], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "client=0 server=0" in done.stdout
