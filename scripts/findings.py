#!/usr/bin/env python3
"""Findings tables generated from committed runs, kept inside Markdown files.

A Markdown file marks where a table goes:

    <!-- findings: results/2026-11-26-epyc-2c -->
    ...generated table...
    <!-- /findings -->

and this script fills the space between the markers from that run folder's files. After the
run folder, a marker may name options, `<!-- findings: RUN workers=2 table=noisy -->`:

- `table=verdicts` (the default), from `verdicts.csv` (written by `threadcenter-bench sweep` or
  `report`): for each kernel, the process ÷ best-thread-backend throughput ratio with its 95 %
  interval and verdict at every service time;
- `table=noisy`, from `noisy.csv`: the same for each mix's majority kernel on its own
  throughput and on its own p99 latency;
- `table=service`, from `results.csv`: each kernel's target service time against the mean
  single-job time measured at the calibrated n, marked where it is more than 25 % off (the
  report's rule);
- `table=tails`, from `results.csv`: per kernel and size, the largest drain tail (replies after
  the measured window's end) as a share of the window, over every backend and worker count,
  marked where it is over 25 % (the sweep's `overrun` rule). Runs from before `tail_s` existed
  counted the tail in their throughput; their tail is `duration_s` − the window;
- `table=split`, from `results.csv`: where a request's time goes, per kernel and backend at
  every size: the p50 latency, server time, queue, compute and transport (SPEC §2.1), each the
  median over the cell's valid repetitions;
- `table=cpu`, from `results.csv`: per kernel and backend at every size, the server's CPU per
  request (its process tree), the driver's, and the share of the machine's cores the two kept
  busy over the load run, each the median over the cell's valid repetitions: whether a
  backend's lead comes from costing less per request or from leaving fewer cores idle;
- `table=model`, from `model.csv`: the model kernel (`gil`) against the real one (`pyfib`):
  each one's process ÷ thread ratio and the ratio of the two with its 95 % interval and what
  it says (`agrees` within the margin, `overstates`, `understates`, `inconclusive`);
- `workers=N`: the worker count the verdict tables show (default: the run's largest);
- `challenger=NAME`: the process-side backend the verdict tables show (default `process`; a
  run with `--backends ...,shm,prefork` has rows for those too);
- `comparator=NAME[,NAME...]`: the thread side the verdict tables compare against (default
  `best thread`, which accounts for picking the better thread backend after the fact); with
  several, such as `comparator=rayon,tokio`, one row per kernel and comparator, each interval
  for its own comparison. Showing every thread backend the run measured makes no choice among
  them; showing only the one that looks best would be the choice `best thread` accounts for.

The numbers in the tables are the verdict code's or the CSV's, never typed by hand.

    python3 scripts/findings.py --write README.md results/README.md   # regenerate in place
    python3 scripts/findings.py --check README.md results/README.md   # exit 1 if stale

Standard library only, so it runs wherever python3 does.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(
    r"(<!-- findings: (?P<spec>[^>]+?) -->\n)(?P<body>.*?)(<!-- /findings -->)", re.DOTALL
)
TOLERANCE = 0.25  # src/report/service.rs
MAX_TAIL_SHARE = 0.25  # src/sweep/cell.rs: a longer drain tail makes a cell `overrun`
CHALLENGER = "process"
COMPARATOR = "best thread"
# src/report/data.rs's order; tests/findings.rs checks that the two agree.
BACKEND_ORDER = ["process", "shm", "prefork", "rayon", "tokio"]
SPLIT = ["lat_p50_us", "server_p50_us", "queue_p50_us", "compute_p50_us", "transport_p50_us"]


def service_time(target_us: str, size: str) -> str:
    """How a sweep was asked for a size: a service time where calibrated, else n."""
    if not target_us:
        return f"n={size}"
    us = float(target_us)
    if us >= 1000:
        return f"{us / 1000:g} ms"
    return f"{us:g} µs"


def cell(row: dict) -> str:
    ratio = float(row["ratio"])
    if row["lo"] and row["hi"]:
        interval = f"{ratio:.2f} [{float(row['lo']):.2f}, {float(row['hi']):.2f}]"
    else:
        interval = f"{ratio:.2f} (no interval)"
    return f"{interval} {row['verdict']}"


def row_counts(results: Path) -> tuple[int, int]:
    """Valid rows and all rows of a run's results.csv."""
    try:
        with results.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise SystemExit(f"findings.py: cannot read {results}: {e.strerror}")
    return sum(r["valid"] == "true" for r in rows), len(rows)


def grid_table(
    caption: str, columns: list[str], kernels: list[str], cell_of, rows_are: str = "kernel"
) -> str:
    """A Markdown table: one row per kernel (backquoted unless already), one column per label,
    `cell_of(kernel, column)` giving each cell's text or None for "–"; `rows_are` heads the
    first column."""
    lines = [
        caption,
        "",
        f"| {rows_are} | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for kernel in kernels:
        cells = [cell_of(kernel, c) or "–" for c in columns]
        name = kernel if kernel.startswith("`") else f"`{kernel}`"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def size_columns(rows: list[dict]) -> list[str]:
    """The service-time column labels of `rows`, shortest first, each once."""
    times = sorted(
        {(float(r.get("target_us") or 0), int(r["size"]), r.get("target_us") or "") for r in rows}
    )
    return list(dict.fromkeys(service_time(t, str(s)) for _, s, t in times))


def read_rows(path: Path) -> list[dict]:
    try:
        with path.open(newline="") as f:
            return list(csv.DictReader(f))
    except OSError as e:
        raise SystemExit(f"findings.py: cannot read {path}: {e.strerror}")


def verdict_table(
    run: Path, file: str, workers: int | None, challenger: str, comparators: list[str]
) -> str:
    verdicts_path = run / file
    rows = read_rows(verdicts_path)
    env = json.loads((run / "env.json").read_text())
    for comparator in comparators:
        if not any(r["challenger"] == challenger and r["comparator"] == comparator for r in rows):
            raise SystemExit(
                f"findings.py: {verdicts_path} has no {challenger} ÷ {comparator} rows"
            )
    chosen = [r for r in rows if r["challenger"] == challenger and r["comparator"] in comparators]
    noisy = "metric" in chosen[0]
    if workers is None:
        workers = max(int(r["workers"]) for r in chosen)
    chosen = [r for r in chosen if int(r["workers"]) == workers]
    if not chosen:
        raise SystemExit(f"findings.py: {verdicts_path} has no rows at {workers} workers")
    columns = size_columns(chosen)
    by_kernel: dict[str, dict[str, dict]] = {}
    for r in chosen:
        name = f"`{r['kernel']}`: {r['metric']}" if noisy else f"`{r['kernel']}`"
        if len(comparators) > 1:
            name += f" ÷ {r['comparator']}"
        by_kernel.setdefault(name, {})[service_time(r["target_us"], r["size"])] = r
    reps = sorted({f"{r['reps_challenger']}/{r['reps_comparator']}" for r in chosen})
    valid, total = row_counts(run / "results.csv")
    what = (
        "each mix's majority kernel on its own: throughput, and p99 latency as thread p99 ÷ "
        f"{challenger} p99 (above 1: {challenger} better);"
        if noisy
        else "throughput,"
    )
    caption = (
        f"{challenger} ÷ {' and '.join(comparators)}, {what} 95 % interval and verdict, "
        f"{workers} workers, "
        f"{env.get('cores', '?')} cores ({env.get('cpu_model', 'unknown CPU')}); "
        f"repetitions {challenger}/threads: {', '.join(reps)}; "
        f"{valid} of {total} rows of results.csv valid."
    )
    rank = {c: i for i, c in enumerate(comparators)}
    kernels = sorted(
        by_kernel,
        key=lambda k: (k.split(" ÷ ")[0].replace("`", ""), rank.get(k.split(" ÷ ")[-1], 0)),
    )
    return grid_table(
        caption,
        columns,
        kernels,
        lambda k, c: cell(by_kernel[k][c]) if c in by_kernel[k] else None,
    )


def service_table(run: Path) -> str:
    """Target against measured single-job time, per kernel and target (all rows count)."""
    rows = [r for r in read_rows(run / "results.csv") if r.get("target_us")]
    if not rows:
        raise SystemExit(f"findings.py: {run / 'results.csv'} has no calibrated sizes")
    sums: dict[tuple[str, float], list[float]] = {}
    for r in rows:
        measured = r.get("service_us") or r.get("single_job_us") or ""
        entry = sums.setdefault((r["kernel"], float(r["target_us"])), [])
        if measured and float(measured) > 0:
            entry.append(float(measured))
    targets = sorted({t for _, t in sums})
    def cell_of(kernel: str, target: float) -> str | None:
        values = sums.get((kernel, target))
        if not values:
            return None
        mean = sum(values) / len(values)
        off = mean / target - 1
        mark = " ⚠" if abs(off) > TOLERANCE else ""
        measured = f"{mean / 1000:.3g} ms" if mean >= 1000 else f"{mean:.3g} µs"
        return f"{measured} ({off:+.0%}){mark}"

    caption = (
        "target service time → mean single-job time measured at the calibrated n, and how far "
        f"off; ⚠ marks more than {TOLERANCE:.0%} off (the report's rule)."
    )
    labels = {service_time(str(t), ""): t for t in targets}
    kernels = sorted({k for k, _ in sums})
    return grid_table(caption, list(labels), kernels, lambda k, c: cell_of(k, labels[c]))


def tails_table(run: Path) -> str:
    """The largest drain tail per kernel and size, as a share of the measured window."""
    env = json.loads((run / "env.json").read_text())
    window = float(env["grid"]["duration"])
    rows = read_rows(run / "results.csv")
    worst: dict[tuple[str, str], tuple[float, str]] = {}
    for r in rows:
        if r.get("tail_s"):
            tail = float(r["tail_s"])
        else:
            tail = max(0.0, float(r["duration_s"]) - window)
        label = service_time(r.get("target_us", ""), r["size"])
        share = tail / window
        key = (r["kernel"], label)
        if key not in worst or share > worst[key][0]:
            worst[key] = (share, f"{r['backend']}, w={r['workers']}")
    def cell_of(kernel: str, column: str) -> str | None:
        if (kernel, column) not in worst:
            return None
        share, where = worst[(kernel, column)]
        mark = " ⚠" if share > MAX_TAIL_SHARE else ""
        return f"{share:.0%} ({where}){mark}"

    caption = (
        f"largest drain tail ÷ measured window ({window:g} s), over every backend and worker "
        f"count, and where it was; ⚠ marks more than {MAX_TAIL_SHARE:.0%} (`overrun`)."
    )
    return grid_table(caption, size_columns(rows), sorted({k for k, _ in worst}), cell_of)


def backend_grid(run: Path, workers: int | None, cell_text, what: str, note: str) -> str:
    """A table of `results.csv`'s valid rows, one row per kernel and backend, one column per
    size: `cell_text(rows)` gives a cell from its repetitions' rows. The caption is `what`,
    the worker count and the run's machine, then `note`."""
    rows = [r for r in read_rows(run / "results.csv") if r["valid"] == "true"]
    env = json.loads((run / "env.json").read_text())
    if workers is None:
        workers = max(int(r["workers"]) for r in rows)
    rows = [r for r in rows if int(r["workers"]) == workers]
    if not rows:
        raise SystemExit(f"findings.py: {run / 'results.csv'} has no valid rows at {workers} workers")
    groups: dict[tuple[str, str], list[dict]] = {}
    order: dict[str, tuple] = {}
    for r in rows:
        name = f"`{r['kernel']}` {r['backend']}"
        rank = BACKEND_ORDER.index(r["backend"]) if r["backend"] in BACKEND_ORDER else 99
        order[name] = (r["kernel"], rank, r["backend"])
        label = service_time(r.get("target_us", ""), r["size"])
        groups.setdefault((name, label), []).append(r)

    def cell_of(name: str, column: str) -> str | None:
        cell_rows = groups.get((name, column))
        return cell_text(cell_rows) if cell_rows else None

    names = sorted(order, key=order.get)
    machine = f"{workers} workers, {env['cores']} cores ({env.get('cpu_model', 'unknown CPU')})"
    caption = f"{what}; {machine}. {note}"
    return grid_table(caption, size_columns(rows), names, cell_of, "kernel, backend")


def split_table(run: Path, workers: int | None) -> str:
    """Where a request's time goes, per kernel and backend: medians of the cells' p50s."""

    def cell_text(rows: list[dict]) -> str:
        medians = [statistics.median(float(r[c]) for r in rows) for c in SPLIT]
        return " / ".join(f"{m:.1f}" for m in medians)

    what = (
        "where a request's time goes, µs: p50 latency / server / queue / compute / transport "
        "(server less queue and compute: the hand-offs inside the server), each the median "
        "over a cell's valid repetitions"
    )
    note = "The columns are medians of their own, so they need not add up."
    return backend_grid(run, workers, cell_text, what, note)


def cpu_table(run: Path, workers: int | None) -> str:
    """CPU per request on each side and the cores kept busy, per kernel and backend."""

    def per_request(rows: list[dict], column: str) -> float:
        return statistics.median(float(r[column]) / max(1, int(r["requests"])) * 1e6 for r in rows)

    def busy(r: dict) -> float:
        # The CPU was sampled over the load run: the window and its drain tail.
        span = (float(r["duration_s"]) + float(r.get("tail_s") or 0)) * int(r["cores"])
        return (float(r["server_cpu_s"]) + float(r["client_cpu_s"])) / span

    def cell_text(rows: list[dict]) -> str:
        server, driver = per_request(rows, "server_cpu_s"), per_request(rows, "client_cpu_s")
        share = statistics.median(busy(r) for r in rows) * 100
        return f"{server:.1f} / {driver:.1f} / {share:.0f} %"

    what = (
        "CPU per request, µs: the server's (its whole process tree, workers included) / the "
        "driver's, then the share of the machine's cores the two kept busy over the load run "
        "(window and drain tail); each the median over a cell's valid repetitions"
    )
    note = "What the busy share leaves is idle time or other processes'."
    return backend_grid(run, workers, cell_text, what, note)


def model_table(run: Path) -> str:
    """The model's process ÷ thread ratio against the real kernel's, per point and comparator."""
    rows = read_rows(run / "model.csv")
    if not rows:
        raise SystemExit(f"findings.py: {run / 'model.csv'} has no rows")
    targets = sorted({float(r["target_us"]) for r in rows})
    labels = {service_time(str(t), ""): t for t in targets}
    cells: dict[tuple[str, float], str] = {}
    order: dict[str, tuple] = {}
    for r in rows:
        name = (
            f"`{r['model']}` vs `{r['real']}`, {r['workers']} workers, "
            f"{r['challenger']} ÷ {r['comparator']}"
        )
        order[name] = (r["model"], r["real"], int(r["workers"]), r["challenger"], r["comparator"])
        interval = cell(r)
        cells[(name, float(r["target_us"]))] = (
            f"{float(r['model_ratio']):.2f} vs {float(r['real_ratio']):.2f}: {interval}"
        )
    names = sorted(order, key=order.get)
    caption = (
        "model's process ÷ thread ratio vs the real kernel's, then model ÷ real with its 95 % "
        "interval (Welch, four samples) and what it says: `agrees` within the equivalence "
        "margin, `overstates` or `understates` the process advantage, or `inconclusive`."
    )
    return grid_table(caption, list(labels), names, lambda n, c: cells.get((n, labels[c])))


def table(spec: str, base: Path) -> str:
    run, *options = spec.split()
    opts = {}
    for o in options:
        key, eq, value = o.partition("=")
        if not eq or key not in ("workers", "table", "challenger", "comparator"):
            raise SystemExit(f"findings.py: unknown marker option {o!r} in {spec!r}")
        opts[key] = value
    folder = (base / run).resolve()
    workers = int(opts["workers"]) if "workers" in opts else None
    kind = opts.get("table", "verdicts")
    challenger = opts.get("challenger", CHALLENGER)
    comparators = opts.get("comparator", COMPARATOR).split(",")
    if kind == "verdicts":
        return verdict_table(folder, "verdicts.csv", workers, challenger, comparators)
    if kind == "noisy":
        return verdict_table(folder, "noisy.csv", workers, challenger, comparators)
    if kind == "service":
        return service_table(folder)
    if kind == "tails":
        return tails_table(folder)
    if kind == "model":
        return model_table(folder)
    if kind == "split":
        return split_table(folder, workers)
    if kind == "cpu":
        return cpu_table(folder, workers)
    raise SystemExit(f"findings.py: unknown table {kind!r} in {spec!r}")


def regenerate(text: str, base: Path) -> str:
    def fill(m: re.Match) -> str:
        return m.group(1) + table(m.group("spec"), base) + m.group(4)

    return BLOCK.sub(fill, text)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate the tables in place")
    mode.add_argument("--check", action="store_true", help="exit 1 when a table is stale")
    parser.add_argument("files", nargs="+", type=Path, help="Markdown files with markers")
    args = parser.parse_args(argv)
    stale = False
    for path in args.files:
        text = path.read_text()
        if not BLOCK.search(text):
            print(f"findings.py: {path} has no <!-- findings: RUN --> markers", file=sys.stderr)
            return 2
        # Run folders are named relative to the repository root, wherever the file is.
        new = regenerate(text, ROOT)
        if new == text:
            continue
        if args.write:
            path.write_text(new)
            print(f"rewrote {path}")
        else:
            stale = True
            diff = difflib.unified_diff(
                text.splitlines(), new.splitlines(), str(path), "generated", lineterm=""
            )
            print("\n".join(diff), file=sys.stderr)
    if stale:
        print("findings.py: tables are stale; run with --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
