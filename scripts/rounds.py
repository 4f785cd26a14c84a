#!/usr/bin/env python3
"""Summarise alternating rounds of rate measurements against a reference (standard library only).

Reads lines `GROUP<TAB>NAME<TAB>ROUND<TAB>RATE<TAB>SERVER_NS<TAB>DRIVER_NS` (what
scripts/ping_vs_redis.sh and scripts/tiny_jobs.sh collect) and prints, per group and name, the
medians over the rounds and, against the reference name of the same group, the rate ratio
paired round by round: its geometric mean with a 95 % Student-t interval (on the logarithms of
the per-round ratios, so it assumes the rounds are independent; alternating the runs within a
round is what makes drift hit both sides alike), its range, and how many rounds were ahead.
CPU columns are the server's and the driver's CPU time per request.

    python3 scripts/rounds.py --ref rayon LINES
"""

import argparse
import collections
import math
import statistics
import sys

# Two-sided 95 % quantiles of Student's t for 1 to 30 degrees of freedom.
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
       2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
       2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t95(df):
    """The two-sided 95 % t quantile; beyond the table, 2.0 (the value at 60 degrees)."""
    return T95[df - 1] if df <= len(T95) else 2.0


def paired_ratio(ratios):
    """Geometric mean of `ratios` and its 95 % interval (None with fewer than two)."""
    logs = [math.log(r) for r in ratios]
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return math.exp(mean), None
    half = t95(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), (math.exp(mean - half), math.exp(mean + half))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lines", help="the collected lines (tab-separated)")
    ap.add_argument("--ref", required=True, help="the name each other one is compared with")
    args = ap.parse_args()

    runs = collections.defaultdict(dict)
    for n, line in enumerate(open(args.lines), 1):
        f = line.rstrip("\n").split("\t")
        if len(f) != 6:
            sys.exit(f"{args.lines}:{n}: expected 6 tab-separated fields, got {len(f)}")
        group, name, rnd = f[0], f[1], f[2]
        runs[(group, name)][rnd] = tuple(float(x) for x in f[3:])

    for (group, name), by_round in sorted(runs.items(), key=lambda kv: (kv[0][0], kv[0][1] == args.ref, kv[0][1])):
        rate, server, driver = (statistics.median(c) for c in zip(*by_round.values()))
        text = (f"{group:<10} {name:<12} {rate:10.0f}/s  server {server:5.0f} + driver "
                f"{driver:5.0f} ns/req")
        ref = runs.get((group, args.ref), {})
        ratios = [v[0] / ref[r][0] for r, v in by_round.items() if r in ref]
        if name != args.ref and ratios:
            gm, ci = paired_ratio(ratios)
            interval = f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "[no interval: one round]"
            ahead = sum(r >= 1 for r in ratios)
            text += (f"  ÷ {args.ref} {gm:.2f} {interval}, rounds {min(ratios):.2f}-"
                     f"{max(ratios):.2f}, ahead in {ahead} of {len(ratios)}")
        print(text)


if __name__ == "__main__":
    main()
