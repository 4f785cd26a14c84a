#!/usr/bin/env python3
"""Where processes beat threads: the ratio of process throughput to the best thread backend's
over workers × work size, one panel per kernel, with the verdicts threadcenter computed
(verdicts.csv beside the CSV). Red cells (ratio > 1) are where processes are faster, blue where
threads are; the colour scale is logarithmic and centred at 1, so 2× and ½× are equally strong.
Each cell shows the ratio, its 95 % interval and the verdict: `process wins`, `threads win`,
`equivalent` or `inconclusive`."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import colors, ticker

import tcplot

NEEDED = ["throughput_rps"]
NAME = "ratio_heatmap"
CMAP = "RdBu_r"


def plot(df: pd.DataFrame, verdicts: pd.DataFrame, out: Path, connections: int | None = None,
         depth: int | None = None) -> list[Path]:
    """Draws the chart from valid rows (as `tcplot.load` returns them) and the sweep's verdicts
    (as `tcplot.read_verdicts` returns them); returns the files."""
    df, load_caption = tcplot.one_load(df, connections, depth, NAME)
    table = tcplot.verdict_table(verdicts, df)
    kernels = sorted(table["kernel"].unique())
    # Each kernel's own sizes: kernels calibrated to different n share no column.
    sizes = {k: tcplot.size_keys(table[table["kernel"] == k]) for k in kernels}
    widest = max(len(v) for v in sizes.values())
    workers = sorted(int(w) for w in table["workers"].unique())
    norm = colors.LogNorm(vmin=1 / _limit(table["ratio"]), vmax=_limit(table["ratio"]))
    cmap = plt.get_cmap(CMAP).copy()
    cmap.set_bad("#e0e0e0")

    ncols = min(len(kernels), 3)
    nrows = -(-len(kernels) // ncols)
    cell_w, cell_h = 1.35, 0.95
    fig, axes = plt.subplots(
        nrows, ncols, squeeze=False, layout="constrained",
        figsize=(ncols * (1.4 + cell_w * widest) + 1.3,
                 nrows * (1.3 + cell_h * max(len(workers), 2)) + 0.6),
    )
    image = None
    for i, kernel in enumerate(kernels):
        ax = axes[i // ncols][i % ncols]
        image = _panel(ax, table[table["kernel"] == kernel], sizes[kernel], workers, norm, cmap)
        ax.set_title(f"kernel {kernel}", fontsize="medium")
    for ax in axes.flat[len(kernels):]:
        ax.set_axis_off()
    bar = fig.colorbar(image, ax=axes, shrink=0.9, pad=0.02,
                       label="ratio (log scale)")
    bar.set_ticks(tcplot.ratio_ticks(norm.vmax, most=9))
    bar.ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    bar.ax.yaxis.set_minor_locator(ticker.NullLocator())
    fig.suptitle(f"Process ÷ best-thread throughput, 95 % interval and verdict "
                 f"(> 1: processes faster; {load_caption})")
    return tcplot.save(fig, out, NAME)


def _limit(ratios: pd.Series) -> float:
    """Half-width of the colour scale: covers the most extreme ratio, at least 1.5×, so a chart
    of near-ties stays pale instead of stretching noise across the whole colour range."""
    r = ratios[np.isfinite(ratios) & (ratios > 0)]
    extreme = float(np.exp(np.abs(np.log(r)).max())) if len(r) else 1.0
    return max(extreme * 1.05, 1.5)


def _panel(ax: plt.Axes, table: pd.DataFrame, sizes, workers, norm, cmap):
    grid = np.full((len(workers), len(sizes)), np.nan)
    notes: dict[tuple[int, int], tuple[str, str, str]] = {}
    col_labels = []
    for c, (key, label) in enumerate(sizes):
        at_size = table[table["size_key"] == key]
        ns = ", ".join(str(int(n)) for n in sorted(at_size["size"].unique()))
        col_labels.append(f"{label}\n(n={ns})" if ns and not label.startswith("n=") else label)
        for _, row in at_size.iterrows():
            r = workers.index(int(row["workers"]))
            grid[r, c] = row["ratio"]
            notes[(r, c)] = (tcplot.fmt_ratio(row["ratio"]),
                             tcplot.fmt_interval(row["lo"], row["hi"]), row["verdict"])
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, origin="lower",
                      aspect="auto")
    for r in range(len(workers)):
        for c in range(len(sizes)):
            if (r, c) not in notes:
                ax.text(c, r, "not\nmeasured", ha="center", va="center", fontsize="x-small",
                        color="0.35")
                continue
            big, interval, verdict = notes[(r, c)]
            # Dark text on pale cells, white on saturated ones.
            shade = abs(float(norm(grid[r, c])) - 0.5)
            colour = "white" if shade > 0.32 else "black"
            ax.text(c, r + 0.2, big, ha="center", va="center", fontsize="medium",
                    fontweight="bold", color=colour)
            ax.text(c, r - 0.05, interval, ha="center", va="center", fontsize="x-small",
                    color=colour)
            ax.text(c, r - 0.27, verdict, ha="center", va="center", fontsize="x-small",
                    color=colour, fontweight="bold" if verdict != "inconclusive" else "normal")
    ax.set_xticks(range(len(sizes)), col_labels, fontsize="small")
    ax.set_yticks(range(len(workers)), [str(w) for w in workers])
    ax.set_xlabel(tcplot.size_axis_label(label for _, label in sizes))
    ax.set_ylabel("workers")
    ax.set_xticks(np.arange(len(sizes) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(len(workers) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=2)
    ax.tick_params(which="minor", length=0)
    return image


def main(argv: list[str] | None = None) -> int:
    return tcplot.load_chart_main(NAME, __doc__, NEEDED, plot, argv, verdicts=True)


if __name__ == "__main__":
    sys.exit(main())
