#!/usr/bin/env python3
"""Where the time of a request goes: for each backend, a stacked bar of the median compute time
(inside the kernel), queue wait (for a free worker), transport inside the server (dispatch, IPC,
encoding) and the remainder outside the server, client and network (end-to-end p50 − server
p50, floored at 0). One panel per kernel (rows) and work size (columns), bars grouped by worker
count. Medians do not add up exactly, so a black tick marks the measured end-to-end p50."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

import tcplot

NEEDED = ["lat_p50_us", "queue_p50_us", "compute_p50_us", "server_p50_us", "transport_p50_us"]
NAME = "latency_split"

# Bottom to top: the work itself, then the overheads around it, from inside the server out.
PARTS = [
    ("compute_p50_us", "compute (in the kernel)", "#4c72b0"),
    ("queue_p50_us", "queue (waiting for a worker)", "#dd8452"),
    ("transport_p50_us", "transport (in the server: dispatch, IPC)", "#8172b3"),
    ("outside_p50_us", "client + network (p50 − server p50)", "#b0b0b0"),
]


def plot(df: pd.DataFrame, out: Path, connections: int | None = None,
         depth: int | None = None, workers: list[int] | None = None) -> list[Path]:
    """Draws the chart from valid rows (as `tcplot.load` returns them); returns the files."""
    df, load_caption = tcplot.one_load(df, connections, depth, NAME)
    if workers:
        present = sorted(int(w) for w in df["workers"].unique())
        if not set(workers) & set(present):
            raise tcplot.PlotError(f"no valid rows with workers in {tcplot.fmt_list(workers)} "
                                   f"(the CSV has {tcplot.fmt_list(present)})")
        df = df[df["workers"].isin(workers)]
    df = df.assign(outside_p50_us=(df["lat_p50_us"] - df["server_p50_us"]).clip(lower=0))
    agg = tcplot.aggregate(df, [p for p, _, _ in PARTS] + ["lat_p50_us"])
    backends = tcplot.backend_order(agg["backend"].unique())
    n_workers = agg["workers"].nunique()
    panel_w = max(3.6, 0.32 * n_workers * (len(backends) + 1) + 1.2)
    fig, panels = tcplot.facet_figure(agg, (panel_w, 3.5), margins=(0.8, 1.0))
    for ax, c, kernel, key, label in panels:
        cells = agg[(agg["kernel"] == kernel) & (agg["size_key"] == key)]
        _panel(ax, cells, backends)
        ax.set_title(tcplot.size_title(kernel, label, cells["size"]), fontsize="medium")
        if c == 0:
            ax.set_ylabel("median time")
    handles = [Patch(color=colour, label=text) for _, text, colour in PARTS]
    handles.append(Line2D([], [], color="black", marker="_", linestyle="none", markersize=12,
                          markeredgewidth=2, label="end-to-end p50"))
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize="small",
               frameon=False)
    fig.suptitle(f"Where the median request's time goes ({load_caption}; mean over repetitions)")
    return tcplot.save(fig, out, NAME)


def _panel(ax: plt.Axes, cells: pd.DataFrame, backends: list[str]) -> None:
    workers = sorted(int(w) for w in cells["workers"].unique())
    ticks, tick_labels, group_centres = [], [], []
    top = 0.0
    for g, w in enumerate(workers):
        start = g * (len(backends) + 1)
        for i, backend in enumerate(backends):
            cell = cells[(cells["workers"] == w) & (cells["backend"] == backend)]
            x = start + i
            ticks.append(x)
            tick_labels.append(backend)
            if cell.empty:
                continue
            row = cell.iloc[0]
            bottom = 0.0
            for part, _, colour in PARTS:
                height = float(row[f"{part}_mean"])
                ax.bar(x, height, bottom=bottom, width=0.8, color=colour, edgecolor="white",
                       linewidth=0.5)
                bottom += height
            p50 = float(row["lat_p50_us_mean"])
            ax.plot([x], [p50], marker="_", color="black", markersize=14, markeredgewidth=2)
            top = max(top, bottom, p50)
        group_centres.append(start + (len(backends) - 1) / 2)
    ax.set_xticks(ticks, tick_labels, rotation=45, ha="right", rotation_mode="anchor",
                  fontsize="small")
    ax.set_ylim(0, top * 1.08 if top > 0 else 1)
    ax.yaxis.set_major_formatter(tcplot.DURATION_FORMAT)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    # A second axis under the backend names labels each group of bars with its worker count.
    groups = ax.secondary_xaxis("bottom")
    groups.set_xticks(group_centres,
                      [f"{w} worker{'s' if w != 1 else ''}" for w in workers])
    groups.tick_params(axis="x", length=0, pad=48)
    groups.spines["bottom"].set_visible(False)
    if len(workers) > 1:
        for g in range(1, len(workers)):
            ax.axvline(g * (len(backends) + 1) - 1, color="0.8", linewidth=1)


def main(argv: list[str] | None = None) -> int:
    p = tcplot.parser(NAME + ".py", __doc__,
                      "python3 scripts/latency_split.py results.csv --out plots --workers 1,4")
    tcplot.add_load_options(p)
    p.add_argument("--workers", type=_int_list, default=None,
                   help="comma-separated worker counts to show (default: all in the CSV)")

    def action(args):
        df = tcplot.load(args.csv, NEEDED)
        return plot(df, args.out, args.connections, args.depth, args.workers)

    return tcplot.run(p, action, argv)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise tcplot.argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values:
        raise tcplot.argparse.ArgumentTypeError("empty list")
    return values


if __name__ == "__main__":
    sys.exit(main())
