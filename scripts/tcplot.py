"""Shared code for the plotting scripts: read a sweep CSV, keep its valid rows, average the
repetitions of each cell, and read the verdicts (process ÷ thread ratios with their intervals)
from the verdicts.csv that `threadcenter-bench sweep` and `report` write beside it.

A *cell group* is one point of the sweep grid without the backend (kernel, workers,
connections, depth, size); the charts compare backends inside a cell group. A *size key* names
a work size the way the sweep was asked for it: by its target service time ("50 µs") where the
CSV has `target_us`, otherwise by its work size ("n=500000"). Two machines calibrate different
`n` for the same target, so runs and kernels line up by size key, not by `n`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import ticker  # noqa: E402

BACKENDS = ("process", "prefork", "rayon", "tokio")
THREAD_BACKENDS = ("rayon", "tokio")
PROCESS_BACKEND = "process"

# Processes in warm colours, threads in cool ones, so the two families read apart at a glance.
BACKEND_STYLE = {
    "process": {"color": "#d62728", "marker": "o"},
    "prefork": {"color": "#ff7f0e", "marker": "s"},
    "rayon": {"color": "#1f77b4", "marker": "^"},
    "tokio": {"color": "#2ca02c", "marker": "D"},
}
OTHER_STYLE = {"color": "#7f7f7f", "marker": "x"}

GROUP = ["kernel", "workers", "connections", "depth", "size"]
SIZE_COLUMNS = ["size_key", "size_label", "size_order"]
CELL = GROUP + SIZE_COLUMNS + ["backend"]

# Every chart needs the grid coordinates; each script adds the measurements it draws.
BASE_COLUMNS = [
    "kernel", "backend", "workers", "connections", "depth", "size", "repetition", "valid",
]
TEXT_COLUMNS = {"kernel", "backend", "valid", "reason"}

DPI = 110


class PlotError(Exception):
    """A problem with the input that the user can fix; printed as one line, exit status 1."""


def backend_style(backend: str) -> dict:
    return BACKEND_STYLE.get(backend, OTHER_STYLE)


def backend_order(backends) -> list[str]:
    """Known backends in a fixed order (so colours and legends agree across charts), then others."""
    present = set(backends)
    return [b for b in BACKENDS if b in present] + sorted(present - set(BACKENDS))


def load(path: str | Path, needed: Sequence[str]) -> pd.DataFrame:
    """Reads a sweep CSV and returns its valid rows, with the size-key columns added.

    `needed` names the measurement columns the caller draws; a CSV without one of them, or with
    no valid row, raises `PlotError` rather than drawing an empty or misleading chart.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False,
                         na_values=[""])
    except FileNotFoundError:
        raise PlotError(f"{path}: no such file") from None
    except pd.errors.EmptyDataError:
        raise PlotError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PlotError(f"{path}: not a readable CSV ({first})") from None
    columns = list(dict.fromkeys(BASE_COLUMNS + list(needed)))
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise PlotError(
            f"{path}: missing column(s) {', '.join(missing)} "
            f"(is it a results.csv from `threadcenter-bench sweep`?)"
        )
    valid = df["valid"].fillna("").astype(str).str.strip().str.lower() == "true"
    df = df[valid].reset_index(drop=True)
    if df.empty:
        raise PlotError(f"{path}: no valid rows (valid == true), nothing to plot")
    df["valid"] = True
    numeric = (set(columns) | {"target_us", "single_job_us", "cores"}) - TEXT_COLUMNS
    for col in numeric & set(df.columns):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    for col in columns:
        if col in numeric and df[col].isna().any():
            raise PlotError(f"{path}: column {col} has empty or non-numeric values in valid rows")
    df["kernel"] = df["kernel"].fillna("")
    df["backend"] = df["backend"].fillna("")
    return add_size_key(df)


def add_size_key(df: pd.DataFrame) -> pd.DataFrame:
    """Adds `size_key`, `size_label` and `size_order` (see the module docs)."""
    target = df["target_us"] if "target_us" in df.columns else pd.Series(np.nan, index=df.index)
    has_target = target.notna()
    df["size_key"] = np.where(has_target, "t" + target.astype(str), "n" + df["size"].astype(str))
    df["size_label"] = [
        fmt_us(t) if ok else f"n={int(n)}"
        for t, n, ok in zip(target, df["size"], has_target, strict=True)
    ]
    # Order sizes by how long a job takes: the target where given, else the measured single-job
    # time, else n itself (comparable only within one kernel, but the best there is).
    if "single_job_us" in df.columns:
        measured = df.groupby("size_key")["single_job_us"].transform("median")
    else:
        measured = df["size"].astype(float)
    df["size_order"] = np.where(has_target, target, measured.fillna(df["size"].astype(float)))
    return df


def size_keys(df: pd.DataFrame) -> list[tuple[str, str]]:
    """The (size_key, size_label) pairs in the frame, shortest job first."""
    keys = df.groupby(["size_key", "size_label"], as_index=False)["size_order"].median()
    keys = keys.sort_values(["size_order", "size_key"])
    return list(zip(keys["size_key"], keys["size_label"], strict=True))


def facets(df: pd.DataFrame) -> tuple[list[str], list[list[tuple[str, str] | None]]]:
    """Lays out one panel per kernel (rows) and size: returns the kernels and, per row, the
    (size_key, size_label) of each column, `None` where that kernel lacks the column's size.

    Columns line up by size when one kernel has every size of the CSV (the usual grid);
    otherwise each row packs its own sizes to the left, so that kernels calibrated to
    different `n` do not leave a mostly empty grid.
    """
    kernels = sorted(df["kernel"].unique())
    every = size_keys(df)
    own = {k: size_keys(df[df["kernel"] == k]) for k in kernels}
    if max(len(v) for v in own.values()) == len(every):
        rows = [[s if s in own[k] else None for s in every] for k in kernels]
    else:
        width = max(len(v) for v in own.values())
        rows = [own[k] + [None] * (width - len(own[k])) for k in kernels]
    return kernels, rows


def facet_grid(kernels: list[str], layout: list[list[tuple[str, str] | None]],
               figsize: tuple[float, float]):
    """The figure for a `facets` layout, and each panel to draw: yields
    `(ax, column, kernel, size_key, size_label)` for every filled panel, after blanking the
    empty ones. The caller adds the legend and saves the figure."""
    fig, axes = plt.subplots(len(kernels), len(layout[0]), squeeze=False, layout="constrained",
                             figsize=figsize)

    def panels():
        for r, kernel in enumerate(kernels):
            for c, size in enumerate(layout[r]):
                if size is None:
                    axes[r][c].set_axis_off()
                    continue
                yield axes[r][c], c, kernel, size[0], size[1]

    return fig, panels()


def facet_figure(df: pd.DataFrame, panel: tuple[float, float],
                 margins: tuple[float, float] = (1.0, 0.9)):
    """`facets` of `df` drawn by `facet_grid`, the figure sized `margins` plus `panel` (width,
    height) per column and row; returns the figure and its panels as `facet_grid` does."""
    kernels, layout = facets(df)
    figsize = (margins[0] + panel[0] * len(layout[0]), margins[1] + panel[1] * len(kernels))
    return facet_grid(kernels, layout, figsize)


def legend_entries(axes, last: Callable[[str], bool] = lambda label: False) -> tuple[list, list]:
    """The handles and labels for one legend of several panels: each label once, with the first
    handle drawn for it, in the order drawn except that those for which `last` holds go after
    the others (reference lines after the data, say)."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    order = sorted(range(len(labels)), key=lambda i: last(labels[i]))
    return [handles[i] for i in order], [labels[i] for i in order]


def size_title(kernel: str, label: str, sizes) -> str:
    """A panel title: kernel, size label and, for a target time, the n it was calibrated to."""
    if label.startswith("n="):
        return f"{kernel} · {label}"
    ns = ", ".join(str(int(n)) for n in sorted(set(sizes)))
    return f"{kernel} · {label} (n={ns})"


def size_axis_label(labels) -> str:
    if all(str(label).startswith("n=") for label in labels):
        return "work size n"
    return "work size (target service time)"


def one_load(df: pd.DataFrame, connections: int | None, depth: int | None,
             script: str) -> tuple[pd.DataFrame, str]:
    """Keeps one client load (connections × depth), so that a line over workers or a bar per
    backend compares like with like. Without a choice it takes the heaviest load in the CSV,
    where throughput is closest to capacity, and says so on stderr.

    Returns the rows and a caption such as "4 connections × depth 1".
    """
    for col, want in (("connections", connections), ("depth", depth)):
        values = sorted(df[col].unique())
        if want is not None:
            if want not in values:
                raise PlotError(
                    f"no valid rows with {col} = {want} (the CSV has {fmt_list(values)})")
            df = df[df[col] == want]
        elif len(values) > 1:
            chosen = values[-1]
            print(f"{script}: note: the CSV has {col} {fmt_list(values)}; plotting {col} = "
                  f"{chosen:g} (choose with --{col})", file=sys.stderr)
            df = df[df[col] == chosen]
    c = int(df["connections"].iloc[0])
    d = int(df["depth"].iloc[0])
    return df, f"{c} connection{'s' if c != 1 else ''} × depth {d}"


def aggregate(df: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Mean and standard deviation over repetitions of each cell.

    Columns: the cell coordinates, `<metric>_mean`, `<metric>_std` (0 for a single repetition)
    and `reps`, the number of valid repetitions averaged.
    """
    cells = df.groupby(CELL, dropna=False)
    out = cells[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{m}_{stat}" for m, stat in out.columns]
    out = out.fillna({f"{m}_std": 0.0 for m in metrics})
    out["reps"] = cells.size()
    return out.reset_index()


VERDICT_COLUMNS = [
    "kernel", "workers", "connections", "depth", "size", "target_us", "challenger",
    "comparator", "ratio", "lo", "hi", "verdict", "reps_challenger", "reps_comparator",
]
VERDICTS = ("process wins", "threads win", "equivalent", "inconclusive")
BEST_THREAD = "best thread"


def verdicts_path(csv: Path, given: Path | None = None) -> Path:
    """The verdicts file of a sweep CSV: `--verdicts` when given, else beside the CSV:
    DIR/verdicts.csv for DIR/results.csv, DIR/NAME.verdicts.csv for any other DIR/NAME.csv."""
    if given is not None:
        return Path(given)
    csv = Path(csv)
    return csv.with_name("verdicts.csv" if csv.name == "results.csv"
                         else f"{csv.stem}.verdicts.csv")


def read_verdicts(path: str | Path) -> pd.DataFrame:
    """Reads a verdicts.csv (SPEC §7); a missing file, column or unknown verdict raises
    `PlotError`. The verdicts are computed by threadcenter itself (Welch intervals, the
    equivalence margin, the correction for choosing the best thread backend), never here."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"kernel": str, "challenger": str, "comparator": str,
                                      "verdict": str}, keep_default_na=False, na_values=[""])
    except FileNotFoundError:
        raise PlotError(
            f"{path}: no such verdicts file (`threadcenter-bench sweep` and `report` write "
            f"verdicts.csv beside the report; give another with --verdicts)") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PlotError(f"{path}: not a readable verdicts CSV ({first})") from None
    missing = [c for c in VERDICT_COLUMNS if c not in df.columns]
    if missing:
        raise PlotError(f"{path}: missing column(s) {', '.join(missing)} "
                        f"(is it a verdicts.csv from threadcenter-bench?)")
    unknown = sorted(set(df["verdict"]) - set(VERDICTS))
    if unknown:
        raise PlotError(f"{path}: unknown verdict(s) {', '.join(map(str, unknown))}")
    for col in ("workers", "connections", "depth", "size", "target_us", "ratio", "lo", "hi"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def verdict_table(verdicts: pd.DataFrame, df: pd.DataFrame,
                  challenger: str = PROCESS_BACKEND) -> pd.DataFrame:
    """`challenger` ÷ best thread backend at every cell group of `df` (valid rows, one load or
    several) that has a verdict: the cell coordinates with the size columns, `ratio`, `lo`,
    `hi` (NaN without an interval), `verdict`, and `best_thread`, the thread backend that
    looked fastest there (named only; the verdict accounts for the choice)."""
    mine = verdicts[verdicts["challenger"] == challenger]
    best = mine[mine["comparator"] == BEST_THREAD]
    pairs = mine[mine["comparator"] != BEST_THREAD]
    if best.empty:
        raise PlotError(f"the verdicts have no {challenger} ÷ best thread rows: the sweep needs "
                        f"valid rows of {challenger} and of rayon or tokio")
    fastest = pairs.loc[pairs.groupby(GROUP)["ratio"].idxmin(), GROUP + ["comparator"]]
    sizes = df[GROUP + SIZE_COLUMNS].drop_duplicates(GROUP)
    table = best[GROUP + ["ratio", "lo", "hi", "verdict"]].merge(sizes, on=GROUP, how="inner")
    table = table.merge(fastest.rename(columns={"comparator": "best_thread"}), on=GROUP,
                        how="left")
    if table.empty:
        raise PlotError(f"no {challenger} ÷ best thread verdict matches a cell group of the CSV "
                        f"(is the verdicts file from the same sweep?)")
    table["best_thread"] = table["best_thread"].fillna("")
    return table.reset_index(drop=True)


def add_verdicts_option(p: argparse.ArgumentParser, runs: int = 1) -> None:
    if runs == 1:
        p.add_argument("--verdicts", type=Path, default=None, metavar="FILE",
                       help="the sweep's verdicts.csv (default: beside the CSV, verdicts.csv "
                            "for results.csv, NAME.verdicts.csv for NAME.csv)")
    else:
        p.add_argument("--verdicts", type=Path, nargs=runs, default=None, metavar="FILE",
                       help="each run's verdicts.csv, in order (default: beside each CSV)")


def fmt_interval(lo: float, hi: float) -> str:
    """The interval as text, e.g. [0.91, 1.10]; "no interval" where a side had one repetition."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no interval"
    return f"[{fmt_ratio(lo)}, {fmt_ratio(hi)}]"


def fmt_us(us: float) -> str:
    """A duration in µs written the way people say it: 50 µs, 2 ms, 1.5 s."""
    for unit, scale in (("s", 1e6), ("ms", 1e3)):
        if us >= scale:
            return f"{us / scale:.3g} {unit}"
    return f"{us:.3g} µs"


DURATION_FORMAT = ticker.FuncFormatter(lambda v, _: "0" if v == 0 else fmt_us(v))


def fmt_list(values) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def fmt_ratio(r: float) -> str:
    return f"{r:.2f}" if r < 10 else f"{r:.1f}" if r < 100 else f"{r:.0f}"


def ratio_ticks(limit: float, most: int = 9) -> list[float]:
    """Ticks for a log ratio axis running from 1/limit to limit: 1 and friendly values mirrored
    on both sides (2 and 0.5), from the finest set whose labels do not crowd each other."""
    tiers = [(1.25, 1.5, 2, 3, 4, 5), (1.5, 2, 3, 5, 10), (2, 5, 10, 20, 50, 100),
             (2, 10, 100, 1000), (10, 100, 1000)]
    span = 2 * np.log(max(limit, 1.01))
    up: list[float] = []
    for tier in tiers:
        up = [float(t) for t in tier if t <= limit * 1.0001]
        steps = np.diff(np.log([1.0] + up))
        if up and len(up) <= (most - 1) // 2 and steps.min() / span >= 0.08:
            break
    below = [float(f"{1 / t:.2g}") for t in reversed(up)]
    return below + [1.0] + up


def nice_workers_axis(ax: plt.Axes, workers: Sequence[int]) -> None:
    """Ticks at the worker counts that were measured; base-2 log spacing once they span 8×."""
    workers = sorted(set(int(w) for w in workers))
    if workers and workers[-1] >= 8 * workers[0]:
        ax.set_xscale("log", base=2)
    ax.set_xticks(workers)
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    if len(workers) == 1:
        ax.set_xlim(workers[0] * 0.5, workers[0] * 1.5)


def auto_scale(ax: plt.Axes, values, axis: str = "y", decades: float = 1.3,
               zero: bool = True, durations: bool = False) -> bool:
    """Log scale when the values span more than `decades` decades, else linear (from zero when
    `zero`); `durations` labels values in µs as 50 µs, 2 ms, 1.5 s. Log axes are labelled at
    1, 2 (3) and 5 × each power of ten, so that a span of one or two decades still has several
    readable ticks. Returns True when the axis became logarithmic.
    """
    v = np.asarray([x for x in values if np.isfinite(x) and x > 0], dtype=float)
    target = ax.yaxis if axis == "y" else ax.xaxis
    formatter = DURATION_FORMAT if durations else ticker.EngFormatter(sep="")
    if v.size and v.max() / v.min() > 10**decades:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        span = np.log10(v.max() / v.min())
        subs = (1.0, 2.0, 3.0, 5.0) if span < 1.5 else (1.0, 2.0, 5.0) if span < 3 else (1.0,)
        target.set_major_locator(ticker.LogLocator(base=10, subs=subs))
        target.set_major_formatter(formatter)
        target.set_minor_locator(ticker.LogLocator(base=10, subs=np.arange(2, 10) * 1.0))
        target.set_minor_formatter(ticker.NullFormatter())
        return True
    if zero:
        top = (v.max() * 1.1) if v.size else None
        (ax.set_ylim(bottom=0, top=top) if axis == "y" else ax.set_xlim(left=0, right=top))
    target.set_major_formatter(formatter)
    return False


def save(fig: plt.Figure, out: Path, name: str) -> list[Path]:
    """Writes NAME.png and NAME.svg into `out` and closes the figure."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{name}.png", out / f"{name}.svg"]
        fig.savefig(paths[0], dpi=DPI)
        fig.savefig(paths[1])
    except OSError as e:
        raise PlotError(f"cannot write {name} into {out}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    return paths


def parser(prog: str, description: str, example: str,
           csv_help: str = "results.csv written by `threadcenter-bench sweep`",
           csv_metavar: str = "CSV") -> argparse.ArgumentParser:
    """The common command line: one CSV and --out."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("csv", type=Path, metavar=csv_metavar, help=csv_help)
    p.add_argument("--out", type=Path, default=Path("."),
                   help="folder for the PNG and SVG files (created if missing; default: .)")
    return p


def add_load_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connections", type=int, default=None,
                   help="plot only cells with this many client connections "
                        "(default: the largest in the CSV)")
    p.add_argument("--depth", type=int, default=None,
                   help="plot only cells with this pipelining depth (default: the largest)")


def run(p: argparse.ArgumentParser, action: Callable[[argparse.Namespace], list[Path]],
        argv: Sequence[str] | None) -> int:
    """Parses arguments, runs the action, prints the files written; a `PlotError` becomes one
    line on stderr and exit status 1."""
    args = p.parse_args(argv)
    try:
        paths = action(args)
    except PlotError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


def load_chart_main(name: str, doc: str, needed: Sequence[str],
                    plot: Callable[..., list[Path]], argv: Sequence[str] | None,
                    verdicts: bool = False) -> int:
    """The `main` of a chart script that draws one CSV at one client load: the common command
    line with --connections and --depth, then `plot(rows, out, connections, depth)`. With
    `verdicts`, also --verdicts, and `plot(rows, verdicts, out, connections, depth)` with the
    sweep's verdicts (`read_verdicts`), read after the CSV so that a bad CSV is named first."""
    p = parser(name + ".py", doc, f"python3 scripts/{name}.py results.csv --out plots")
    add_load_options(p)
    if verdicts:
        add_verdicts_option(p)

    def action(args):
        rows = load(args.csv, needed)
        if verdicts:
            table = read_verdicts(verdicts_path(args.csv, args.verdicts))
            return plot(rows, table, args.out, args.connections, args.depth)
        return plot(rows, args.out, args.connections, args.depth)

    return run(p, action, argv)
