#!/usr/bin/env python3
"""Plot attempts per call and success rate over time from `cargo bench --bench outage`.

    pip install matplotlib
    python3 benches/plot_outage.py [target/outage.csv] [docs/outage.png]
"""
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

source = sys.argv[1] if len(sys.argv) > 1 else "target/outage.csv"
target = sys.argv[2] if len(sys.argv) > 2 else "docs/outage.png"

series = defaultdict(list)
with open(source, newline="") as f:
    for row in csv.DictReader(f):
        series[row["variant"]].append(
            (float(row["t_s"]), float(row["attempts_per_call"]), float(row["success_rate"]) * 100)
        )

fig, (attempts, success) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
for variant, points in series.items():
    points.sort()
    times = [p[0] for p in points]
    attempts.plot(times, [p[1] for p in points], label=variant)
    success.plot(times, [p[2] for p in points], label=variant)
for axis in (attempts, success):
    axis.axvspan(10, 15, color="grey", alpha=0.15, label="server down")
attempts.set_ylabel("attempts per call")
attempts.set_title("50 callers, 200 calls/s, max = 3: the server is down from 10 s to 15 s")
attempts.legend()
success.set_ylabel("calls that succeed (%)")
success.set_xlabel("time (s), 250 ms buckets")
fig.tight_layout()
fig.savefig(target, dpi=100)
print(f"wrote {target}")
