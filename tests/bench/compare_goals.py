#!/usr/bin/env python3
"""bench/compare's goal bookkeeping: the goal rows of a sitting, the history
of sittings in sittings.json and the table of results.md that shows the
newest sittings side by side.  Exits non-zero at the first wrong answer."""
import importlib.machinery
import importlib.util
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
loader = importlib.machinery.SourceFileLoader("compare", str(BENCH / "compare"))
spec = importlib.util.spec_from_loader("compare", loader)
compare = importlib.util.module_from_spec(spec)
loader.exec_module(compare)


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}")
        sys.exit(1)


def run(kind, key, impl, n, **figures):
    return {"kind": kind, "key": key, "impl": impl, "run": n, "figures": figures,
            "rss_server_kib": 1, "rss_client_kib": 1, "cpu_server_s": 0.1,
            "cpu_client_s": 0.1, "ok": True}


# Three pairs of the TCP goal (≥ 0.9x iperf3): ratios 0.95, 0.85, 0.92 -> median
# of the medians 0.92, 2 of 3 pairs meet it: met.
runs = []
for n, (a, b) in enumerate([(95, 100), (85, 100), (92, 100)]):
    runs += [run("iops", "tcp Sync", "libnq", n, gbps=a), run("iperf3", "single stream",
                                                             "iperf3", n, gbps=b)]
# Three pairs of the round trip goal (≤ 0.8x, lower is better): 0.7, 0.9, 0.95
# -> median 0.9: not met, though one pair meets it.
for n, (a, b) in enumerate([(70, 100), (90, 100), (95, 100)]):
    runs += [run("lat", "64 B", "libnq", n, p50=a), run("lat", "64 B", "zmq", n, p50=b)]
# A failed peer run leaves its pair out.
runs += [run("thr", "64 B", "libnq", 0, msgs=5), dict(run("thr", "64 B", "zmq", 0, msgs=4),
                                                      ok=False, error="x")]

rows = compare.goal_rows(runs)
check([r["goal"] for r in rows] == ["TCP 2 MiB (iops Sync) vs iperf3, one stream",
                                    "64 B round trip p50 vs ZeroMQ (lower is better)"],
      f"goals measured: {[r['goal'] for r in rows]}")
tcp, rtt = rows
check(abs(tcp["median"] - 0.92) < 1e-9 and tcp["won"] == 2 and tcp["met"], f"tcp row {tcp}")
check(abs(rtt["median"] - 0.9) < 1e-9 and rtt["won"] == 1 and not rtt["met"], f"rtt row {rtt}")
table = compare.goals_section(rows)
check(any("| 0.92x | 0.85x – 0.95x | 2 of 3 | yes |" in line for line in table),
      "the sitting's table shows the TCP row")
check(any("| 0.90x | 0.70x – 0.95x | 1 of 3 | **no** |" in line for line in table),
      "the sitting's table shows the round trip row")

with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "sittings.json"
    history = compare.record_sitting(path, {"mode": "quick", "stamp": "2026-01-01 10:00 UTC",
                                            "commit": "commit a", "goals": rows})
    check(compare.sittings_section(history) == [], "one sitting: no side-by-side table")
    # A broken history is started again, not a crash.
    path.write_text("not json")
    history = compare.record_sitting(path, {"mode": "quick", "stamp": "2026-01-01 10:00 UTC",
                                            "commit": "commit a", "goals": rows})
    check(len(history) == 1, "a broken history starts again")
    flipped = [dict(tcp, median=0.5, won=0, met=False)]
    for stamp, mode, goals in (("2026-01-01 11:00 UTC", "full", rows),
                               ("2026-01-01 12:00 UTC", "quick", flipped),
                               ("2026-01-01 13:00 UTC", "quick", rows)):
        history = compare.record_sitting(path, {"mode": mode, "stamp": stamp,
                                                "commit": "commit b", "goals": goals})
    check(len(history) == 4, "every sitting is kept")
    section = compare.sittings_section(history)
    head = next(line for line in section if line.startswith("| goal |"))
    # The two newest quick sittings and the full one, oldest first; the first
    # quick sitting is left out.
    check(head.count("--quick") == 2 and head.count("--full") == 1
          and "10:00" not in head and head.index("11:00") < head.index("12:00")
          < head.index("13:00"), f"columns: {head}")
    tcp_line = next(line for line in section if line.startswith("| TCP 2 MiB"))
    check(tcp_line == "| TCP 2 MiB (iops Sync) vs iperf3, one stream | ≥ 0.90x | "
          "0.92x, 2 of 3, yes | 0.50x, 0 of 3, **no** | 0.92x, 2 of 3, yes |",
          f"TCP line: {tcp_line}")
    rtt_line = next(line for line in section if line.startswith("| 64 B round trip"))
    check("| ≤ 0.80x | 0.90x, 1 of 3, **no** | – | 0.90x, 1 of 3, **no** |" in rtt_line,
          f"a goal a sitting did not measure: {rtt_line}")
    met = next(line for line in section if line.startswith("| goals met"))
    check(met == "| goals met | | 1 of 2 | 0 of 1 | 1 of 2 |", f"goals met: {met}")
    for i in range(compare.SITTINGS_KEPT):
        history = compare.record_sitting(path, {"mode": "full", "stamp": f"2027-{i:02d}",
                                                "commit": "", "goals": rows})
    check(len(history) == compare.SITTINGS_KEPT and history[-1]["stamp"] ==
          f"2027-{compare.SITTINGS_KEPT - 1:02d}", "the history keeps the newest sittings")
print("PASS compare_goals")
