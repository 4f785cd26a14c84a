#!/usr/bin/env python3
"""Draws every single-run chart from one sweep CSV: throughput vs workers, the process ÷
best-thread ratio heatmap with its verdicts (from verdicts.csv beside the CSV), latency vs
throughput, and the split of the median latency. Each chart is also a script of its own (see
scripts/README.md); compare_runs.py takes two CSVs and is not part of this set."""

from __future__ import annotations

import sys

import latency
import latency_split
import ratio_heatmap
import tcplot
import throughput

# Every chart's columns: the CSV is checked once, up front, so a bad file fails before any
# chart is written rather than halfway through.
NEEDED = sorted(set(throughput.NEEDED) | set(ratio_heatmap.NEEDED) | set(latency.NEEDED)
                | set(latency_split.NEEDED))


def main(argv: list[str] | None = None) -> int:
    p = tcplot.parser("plot_all.py", __doc__,
                      "python3 scripts/plot_all.py results.csv --out plots")
    tcplot.add_load_options(p)
    tcplot.add_verdicts_option(p)

    def action(args):
        df = tcplot.load(args.csv, NEEDED)
        verdicts = tcplot.read_verdicts(tcplot.verdicts_path(args.csv, args.verdicts))
        paths = []
        paths += throughput.plot(df, args.out, args.connections, args.depth)
        paths += ratio_heatmap.plot(df, verdicts, args.out, args.connections, args.depth)
        paths += latency.plot(df, args.out)
        paths += latency_split.plot(df, args.out, args.connections, args.depth)
        return paths

    return tcplot.run(p, action, argv)


if __name__ == "__main__":
    sys.exit(main())
