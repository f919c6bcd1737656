#!/usr/bin/env python3
"""Plot success rate and p99 latency against fault rate from `cargo bench --bench chaos`.

    pip install matplotlib
    python3 benches/plot.py [target/chaos.csv] [docs/chaos.png]
"""
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

source = sys.argv[1] if len(sys.argv) > 1 else "target/chaos.csv"
target = sys.argv[2] if len(sys.argv) > 2 else "docs/chaos.png"

series = defaultdict(list)
with open(source, newline="") as f:
    for row in csv.DictReader(f):
        series[row["variant"]].append(
            (float(row["fault_rate"]) * 100, float(row["success_rate"]), float(row["p99_ms"]))
        )

fig, (success, p99) = plt.subplots(1, 2, figsize=(10, 4))
for variant, points in series.items():
    points.sort()
    rates = [p[0] for p in points]
    success.plot(rates, [p[1] for p in points], marker="o", label=variant)
    p99.plot(rates, [p[2] for p in points], marker="o", label=variant)
success.set(title="Success rate", xlabel="connections reset (%)", ylabel="calls succeeded (%)")
p99.set(title="p99 latency", xlabel="connections reset (%)", ylabel="ms")
for ax in (success, p99):
    ax.grid(True, alpha=0.3)
    ax.legend()
fig.suptitle("10,000 reads, 16 concurrent, one connection per read, through a resetting proxy")
fig.tight_layout()
fig.savefig(target, dpi=110)
print(f"wrote {target}")
