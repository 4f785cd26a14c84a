#!/usr/bin/env python3
"""Compares two sweeps, for instance the same grid on a 2-core and a 16-core machine: for each
kernel, the process ÷ best-thread throughput ratio (> 1: processes faster), one line per run,
with error bars spanning each ratio's 95 % interval, both read from each run's verdicts.csv
(beside its CSV, or --verdicts A B). A point without an interval (one repetition) is hollow.

The x axis is the worker count, one panel per work size, when every run measured at least two
worker counts for that kernel; otherwise (one worker count per run, say each run at its
machine's core count) the x axis is the work size, with one line per run and worker count.
Sizes are matched by their target service time, since each machine calibrates its own n."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib import ticker

import tcplot

NEEDED = ["throughput_rps"]
NAME = "compare_runs"
RUN_STYLES = [
    {"color": "#1b9e77", "marker": "o", "linestyle": "-"},
    {"color": "#7570b3", "marker": "s", "linestyle": "--"},
]
WORKER_MARKERS = ["o", "s", "^", "D", "v", "P"]


def plot(tables: list[pd.DataFrame], labels: list[str], out: Path, x: str = "auto") -> list[Path]:
    """Draws the comparison from each run's `tcplot.verdict_table`; returns the files."""
    kernels = sorted(set().union(*(set(t["kernel"]) for t in tables)))
    modes = {k: _mode(k, tables, x) for k in kernels}
    ncols = max(len(_panels(k, modes[k], tables)) for k in kernels)
    fig, axes = plt.subplots(len(kernels), ncols, squeeze=False, layout="constrained",
                             figsize=(max(8.0, 1.0 + 4.2 * ncols), 1.0 + 3.2 * len(kernels)))
    for r, kernel in enumerate(kernels):
        panels = _panels(kernel, modes[kernel], tables)
        for c in range(ncols):
            ax = axes[r][c]
            if c >= len(panels):
                ax.set_axis_off()
                continue
            key, title = panels[c]
            missing = []
            if modes[kernel] == "workers":
                missing = _by_workers(ax, kernel, key, tables, labels)
            else:
                _by_size(ax, kernel, tables, labels)
            note = f" (no data from {', '.join(missing)})" if missing else ""
            ax.set_title(f"{kernel} · {title}{note}", fontsize="medium")
            if c == 0:
                ax.set_ylabel("process ÷ best thread")
    # The runs first, then the parity line.
    handles, names = tcplot.legend_entries(axes.flat, last=lambda lab: lab.startswith("parity"))
    fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 3),
               fontsize="small", frameon=False)
    fig.suptitle("Process ÷ best-thread throughput, run against run (> 1: processes faster)")
    return tcplot.save(fig, out, NAME)


def _mode(kernel: str, tables: list[pd.DataFrame], x: str) -> str:
    if x != "auto":
        return x
    counts = [t.loc[t["kernel"] == kernel, "workers"].nunique() for t in tables]
    return "workers" if all(n >= 2 for n in counts if n) else "size"


def _panels(kernel: str, mode: str, tables: list[pd.DataFrame]) -> list[tuple[str, str]]:
    """(size key, title) per panel: one per size when x is workers, a single one otherwise."""
    if mode == "size":
        return [("", "by work size")]
    rows = pd.concat([t[t["kernel"] == kernel] for t in tables])
    return [(key, label) for key, label in tcplot.size_keys(rows)]


def _by_workers(ax: plt.Axes, kernel: str, key: str, tables, labels) -> list[str]:
    """Draws one size's ratio against workers; returns the runs without data at that size."""
    workers, ratios, missing = set(), [], []
    lines = []
    for i, (table, label) in enumerate(zip(tables, labels, strict=True)):
        t = table[(table["kernel"] == kernel) & (table["size_key"] == key)]
        if t.empty:
            missing.append(label)
        else:
            lines.append((i, label, t.sort_values("workers")))
            workers |= set(int(w) for w in t["workers"])
    workers = sorted(workers)
    log_x = len(workers) > 1 and workers[-1] >= 8 * workers[0]
    span = (workers[-1] - workers[0]) or 1
    for k, (i, label, t) in enumerate(lines):
        # Nudge the runs apart sideways so that their error bars do not hide each other.
        shift = (k - (len(lines) - 1) / 2) * 0.03
        x = t["workers"] * 2**shift if log_x else t["workers"] + shift * span
        _errorbar(ax, x, t, label, RUN_STYLES[i % len(RUN_STYLES)])
        ratios += _extent(t)
    tcplot.nice_workers_axis(ax, workers)
    ax.set_xlabel("workers")
    _ratio_axis(ax, ratios)
    return missing


def _by_size(ax: plt.Axes, kernel: str, tables, labels) -> None:
    rows = pd.concat([t[t["kernel"] == kernel] for t in tables])
    sizes = tcplot.size_keys(rows)
    position = {key: i for i, (key, _) in enumerate(sizes)}
    lines = []
    for i, (table, label) in enumerate(zip(tables, labels, strict=True)):
        for j, (w, at_w) in enumerate(table[table["kernel"] == kernel].groupby("workers")):
            at_w = at_w.assign(pos=at_w["size_key"].map(position)).sort_values("pos")
            style = dict(RUN_STYLES[i % len(RUN_STYLES)])
            # Same run, same colour and dash; the worker count picks the marker.
            style["marker"] = WORKER_MARKERS[j % len(WORKER_MARKERS)]
            name = f"{label}, {int(w)} worker{'s' if w != 1 else ''}"
            lines.append((name, style, at_w))
    ratios = []
    for k, (name, style, at_w) in enumerate(lines):
        shift = (k - (len(lines) - 1) / 2) * 0.06
        _errorbar(ax, at_w["pos"] + shift, at_w, name, style)
        ratios += _extent(at_w)
    ax.set_xticks(range(len(sizes)), [label for _, label in sizes])
    ax.set_xlim(-0.5, len(sizes) - 0.5)
    ax.set_xlabel(tcplot.size_axis_label(label for _, label in sizes))
    _ratio_axis(ax, ratios)


def _errorbar(ax: plt.Axes, x, t: pd.DataFrame, label: str, style: dict) -> None:
    """Ratios with their intervals as asymmetric error bars; hollow markers where a ratio has
    no interval (a side with one repetition)."""
    below = (t["ratio"] - t["lo"]).fillna(0.0).clip(lower=0.0)
    above = (t["hi"] - t["ratio"]).fillna(0.0).clip(lower=0.0)
    line = ax.errorbar(x, t["ratio"], yerr=[below, above], label=label, capsize=3, markersize=5,
                       linewidth=1.5, **style)
    none = t["lo"].isna().to_numpy()
    if none.any():
        ax.plot(pd.Series(list(x))[none], t["ratio"][none], linestyle="none",
                marker=style["marker"], markersize=5, markerfacecolor="white",
                markeredgecolor=line[0].get_color())


def _extent(t: pd.DataFrame) -> list[float]:
    """Every ratio and interval end, for the axis range."""
    return [v for v in list(t["ratio"]) + list(t["lo"]) + list(t["hi"]) if pd.notna(v)]


def _ratio_axis(ax: plt.Axes, ratios: list[float]) -> None:
    """A log axis symmetric about parity, so that 2× and ½× sit equally far from the line at 1."""
    finite = [r for r in ratios if r > 0]
    extreme = max([max(r, 1 / r) for r in finite] + [1.5]) * 1.1
    ax.set_yscale("log")
    ax.set_ylim(1 / extreme, extreme)
    ax.yaxis.set_major_locator(ticker.FixedLocator(tcplot.ratio_ticks(extreme, most=9)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(ticker.NullLocator())
    ax.axhline(1, color="0.3", linewidth=1, linestyle=":", label="parity (ratio 1)")
    ax.grid(True, axis="y", alpha=0.3)


def _default_label(path: Path) -> str:
    """A run folder's name reads better than `results.csv`."""
    return path.parent.name if path.name == "results.csv" and path.parent.name else path.stem


def main(argv: list[str] | None = None) -> int:
    p = tcplot.parser(
        NAME + ".py", __doc__,
        'python3 scripts/compare_runs.py a/results.csv b/results.csv '
        '--labels "2 cores" "16 cores" --out plots',
        csv_help="the first run's results.csv", csv_metavar="A.csv")
    p.add_argument("other", type=Path, metavar="B.csv", help="the second run's results.csv")
    p.add_argument("--labels", nargs=2, metavar=("A", "B"), default=None,
                   help="names of the two runs in the legend (default: their folder names)")
    p.add_argument("--x", choices=["auto", "workers", "size"], default="auto",
                   help="x axis: workers, size, or auto (workers when both runs measured "
                        "several worker counts; the default)")
    tcplot.add_load_options(p)
    tcplot.add_verdicts_option(p, runs=2)

    def action(args):
        paths = [args.csv, args.other]
        labels = args.labels or [_default_label(path) for path in paths]
        if labels[0] == labels[1]:
            labels = [f"{labels[0]} (A)", f"{labels[1]} (B)"]
        frames = [tcplot.one_load(tcplot.load(path, NEEDED), args.connections, args.depth,
                                  NAME)[0] for path in paths]
        given = args.verdicts or [None, None]
        tables = []
        for path, df, verdicts in zip(paths, frames, given, strict=True):
            verdicts = tcplot.read_verdicts(tcplot.verdicts_path(path, verdicts))
            try:
                tables.append(tcplot.verdict_table(verdicts, df))
            except tcplot.PlotError as e:
                raise tcplot.PlotError(f"{path}: {e}") from None
        return plot(tables, labels, args.out, args.x)

    return tcplot.run(p, action, argv)


if __name__ == "__main__":
    sys.exit(main())
