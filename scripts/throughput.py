#!/usr/bin/env python3
"""Throughput against workers: one panel per kernel (rows) and work size (columns), one line per
backend (mean ± standard deviation over repetitions), and the ideal line
min(workers, cores) ÷ single-job time that perfect scaling would reach."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import tcplot

NEEDED = ["throughput_rps", "single_job_us", "cores"]
NAME = "throughput"


def plot(df: pd.DataFrame, out: Path, connections: int | None = None,
         depth: int | None = None) -> list[Path]:
    """Draws the chart from valid rows (as `tcplot.load` returns them); returns the files."""
    df, load_caption = tcplot.one_load(df, connections, depth, NAME)
    agg = tcplot.aggregate(df, ["throughput_rps"])
    backends = tcplot.backend_order(df["backend"].unique())
    fig, panels = tcplot.facet_figure(df, (4.0, 3.1))
    for ax, c, kernel, key, label in panels:
        rows = df[(df["kernel"] == kernel) & (df["size_key"] == key)]
        cells = agg[(agg["kernel"] == kernel) & (agg["size_key"] == key)]
        _panel(ax, rows, cells, backends)
        ax.set_title(tcplot.size_title(kernel, label, rows["size"]), fontsize="medium")
        ax.set_xlabel("workers")
        if c == 0:
            ax.set_ylabel("throughput (requests/s)")
    # Backends first, then the reference lines.
    handles, labels = tcplot.legend_entries(fig.axes, last=lambda lab: lab not in backends)
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 7),
               fontsize="small", frameon=False)
    fig.suptitle(f"Throughput vs workers (mean ± std over repetitions; {load_caption})")
    return tcplot.save(fig, out, NAME)


def _panel(ax: plt.Axes, rows: pd.DataFrame, cells: pd.DataFrame, backends: list[str]) -> None:
    workers = sorted(int(w) for w in rows["workers"].unique())
    log_x = len(workers) > 1 and workers[-1] >= 8 * workers[0]
    present = [b for b in backends if b in set(cells["backend"])]
    values = []
    for i, backend in enumerate(present):
        b = cells[cells["backend"] == backend].sort_values("workers")
        # Nudge the backends apart sideways so that their error bars do not hide each other.
        shift = (i - (len(present) - 1) / 2) * 0.04
        span = (workers[-1] - workers[0]) or 1
        x = b["workers"] * (2**shift) if log_x else b["workers"] + shift * span
        style = tcplot.backend_style(backend)
        ax.errorbar(x, b["throughput_rps_mean"], yerr=b["throughput_rps_std"], label=backend,
                    color=style["color"], marker=style["marker"], markersize=5, capsize=3,
                    linewidth=1.5)
        values.extend((b["throughput_rps_mean"] + b["throughput_rps_std"]).tolist())
    cores = int(rows["cores"].max())
    single_us = float(rows["single_job_us"].mean())
    grid = np.array(sorted(set(workers) | ({cores} if workers[0] < cores < workers[-1] else set())))
    ideal = np.minimum(grid, cores) / single_us * 1e6
    ideal_label = "ideal = min(workers, cores) ÷ single-job time"
    if len(grid) == 1:
        ax.axhline(ideal[0], color="k", linestyle="--", linewidth=1.2, label=ideal_label)
    else:
        ax.plot(grid, ideal, "k--", linewidth=1.2, label=ideal_label)
    values.extend(ideal.tolist())
    if workers[0] <= cores <= workers[-1] and len(workers) > 1:
        ax.axvline(cores, color="0.6", linestyle=":", linewidth=1,
                   label=f"cores ({cores}) on the machine")
    tcplot.nice_workers_axis(ax, workers)
    tcplot.auto_scale(ax, values, "y")
    ax.grid(True, which="major", alpha=0.3)


def main(argv: list[str] | None = None) -> int:
    return tcplot.load_chart_main(NAME, __doc__, NEEDED, plot, argv)


if __name__ == "__main__":
    sys.exit(main())
