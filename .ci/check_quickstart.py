"""Checks a finished quickstart: both evaluations ran and held-out pass@1 rose enough."""
import argparse
import json
import sys

p = argparse.ArgumentParser()
p.add_argument("summary")
p.add_argument("--min-gain", type=float, default=15.0, help="percentage points")
a = p.parse_args()
with open(a.summary) as f:
  rows = {r["stage"]: r["summary"] for r in json.load(f)["table"]}
if set(rows) != {"pretrain", "r1_zero"}:
  sys.exit(f"quickstart did not finish: evaluated stages {sorted(rows)}")
before, after = 100 * rows["pretrain"]["pass@1"], 100 * rows["r1_zero"]["pass@1"]
print(f"quickstart held-out pass@1: {before:.1f} -> {after:.1f} (gain {after - before:+.1f}, "
      f"need >= {a.min_gain:+.1f})")
if after - before < a.min_gain:
  sys.exit(1)
