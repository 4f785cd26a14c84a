#!/usr/bin/env python3
"""Latency against throughput: the median (p50, solid) and 99th percentile (p99, dashed) response
time of every cell against the throughput it reached, one colour per backend, one panel per
kernel (rows) and work size (columns). Each point is a cell (workers × connections × depth)
averaged over its repetitions; points of a backend are joined in order of throughput, so a
curve that climbs steeply is a backend that runs out of capacity."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.lines import Line2D

import tcplot

NEEDED = ["throughput_rps", "lat_p50_us", "lat_p99_us"]
NAME = "latency"


def plot(df: pd.DataFrame, out: Path) -> list[Path]:
    """Draws the chart from valid rows (as `tcplot.load` returns them); returns the files."""
    agg = tcplot.aggregate(df, ["throughput_rps", "lat_p50_us", "lat_p99_us"])
    backends = tcplot.backend_order(agg["backend"].unique())
    fig, panels = tcplot.facet_figure(agg, (4.0, 3.1))
    for ax, c, kernel, key, label in panels:
        cells = agg[(agg["kernel"] == kernel) & (agg["size_key"] == key)]
        _panel(ax, cells, backends)
        ax.set_title(tcplot.size_title(kernel, label, cells["size"]), fontsize="medium")
        ax.set_xlabel("throughput (requests/s)")
        if c == 0:
            ax.set_ylabel("response time")
    handles = [Line2D([], [], color=tcplot.backend_style(b)["color"],
                      marker=tcplot.backend_style(b)["marker"], label=b) for b in backends]
    handles += [Line2D([], [], color="0.3", linestyle="-", label="p50"),
                Line2D([], [], color="0.3", linestyle="--", label="p99")]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles),
               fontsize="small", frameon=False)
    fig.suptitle("Latency vs throughput (p50 solid, p99 dashed; mean over repetitions)")
    return tcplot.save(fig, out, NAME)


def _panel(ax: plt.Axes, cells: pd.DataFrame, backends: list[str]) -> None:
    xs, ys = [], []
    for backend in backends:
        b = cells[cells["backend"] == backend].sort_values("throughput_rps_mean")
        if b.empty:
            continue
        style = tcplot.backend_style(backend)
        for col, line, marker_size in (("lat_p50_us_mean", "-", 5), ("lat_p99_us_mean", "--", 4)):
            ax.plot(b["throughput_rps_mean"], b[col], linestyle=line, color=style["color"],
                    marker=style["marker"], markersize=marker_size, linewidth=1.4,
                    alpha=1.0 if line == "-" else 0.8)
            ys.extend(b[col].tolist())
        xs.extend(b["throughput_rps_mean"].tolist())
    log_x = tcplot.auto_scale(ax, xs, "x", decades=1.0, zero=False)
    log_y = tcplot.auto_scale(ax, ys, "y", decades=1.0, durations=True)
    ax.grid(True, which="major", alpha=0.3)
    if log_x or log_y:
        ax.grid(True, which="minor", alpha=0.1)


def main(argv: list[str] | None = None) -> int:
    p = tcplot.parser(NAME + ".py", __doc__, "python3 scripts/latency.py results.csv --out plots")

    def action(args):
        return plot(tcplot.load(args.csv, NEEDED), args.out)

    return tcplot.run(p, action, argv)


if __name__ == "__main__":
    sys.exit(main())
