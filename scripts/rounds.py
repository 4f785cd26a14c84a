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

def t_within(t, df):
    """P(|T| < t) for Student's t with a whole number `df` of degrees of freedom: the finite
    series of Abramowitz & Stegun 26.7.3-4 in θ = atan(t/√df), exact up to rounding."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 1:
        term, total = 1.0, 1.0 if df > 1 else 0.0
        for k in range(3, df, 2):  # 2/3 c², (2·4)/(3·5) c⁴, …
            term *= (k - 1) / k * c2
            total += term
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    term, total = 1.0, 1.0
    for k in range(2, df, 2):  # 1/2 c², (1·3)/(2·4) c⁴, …
        term *= (k - 1) / k * c2
        total += term
    return math.sin(theta) * total


def t95(df):
    """The two-sided 95 % quantile of Student's t at `df` (a whole number ≥ 1) degrees of
    freedom, found by bisection on the exact CDF: 12.706 at 1, 2.042 at 30, 2.021 at 40,
    2.000 at 60, 1.984 at 100."""
    lo, hi = 1.0, 13.0  # t95(1) = 12.706 is the largest
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_within(mid, df) < 0.95 else (lo, mid)
    return (lo + hi) / 2


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
