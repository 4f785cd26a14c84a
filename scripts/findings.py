#!/usr/bin/env python3
"""Findings tables generated from committed runs, kept inside Markdown files.

A Markdown file marks where a table goes:

    <!-- findings: results/2026-11-26-epyc-2c -->
    ...generated table...
    <!-- /findings -->

and this script fills the space between the markers from that run folder's `verdicts.csv`
(written by `threadcenter-bench sweep` or `report`) and `env.json`: for each kernel, the
process ÷ best-thread-backend throughput ratio with its 95 % interval and verdict at every
service time, at the run's largest worker count. The numbers in the table are the verdict
code's, never typed by hand.

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
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(
    r"(<!-- findings: (?P<run>[^ ]+) -->\n)(?P<body>.*?)(<!-- /findings -->)", re.DOTALL
)
CHALLENGER = "process"
COMPARATOR = "best thread"


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


def table(run: Path) -> str:
    verdicts_path = run / "verdicts.csv"
    try:
        with verdicts_path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise SystemExit(f"findings.py: cannot read {verdicts_path}: {e.strerror}")
    env = json.loads((run / "env.json").read_text())
    chosen = [r for r in rows if r["challenger"] == CHALLENGER and r["comparator"] == COMPARATOR]
    if not chosen:
        raise SystemExit(f"findings.py: {verdicts_path} has no {CHALLENGER} ÷ {COMPARATOR} rows")
    workers = max(int(r["workers"]) for r in chosen)
    chosen = [r for r in chosen if int(r["workers"]) == workers]
    times = sorted({(float(r["target_us"] or 0), int(r["size"]), r["target_us"]) for r in chosen})
    columns = []
    for _, size, target in times:
        label = service_time(target, str(size))
        if label not in columns:
            columns.append(label)
    by_kernel: dict[str, dict[str, dict]] = {}
    for r in chosen:
        by_kernel.setdefault(r["kernel"], {})[service_time(r["target_us"], r["size"])] = r
    reps = sorted({f"{r['reps_challenger']}/{r['reps_comparator']}" for r in chosen})
    valid, total = row_counts(run / "results.csv")
    lines = [
        f"{CHALLENGER} ÷ {COMPARATOR} throughput, 95 % interval and verdict, {workers} workers, "
        f"{env.get('cores', '?')} cores ({env.get('cpu_model', 'unknown CPU')}); "
        f"repetitions {CHALLENGER}/threads: {', '.join(reps)}; "
        f"{valid} of {total} rows of results.csv valid.",
        "",
        "| kernel | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for kernel in sorted(by_kernel):
        cells = [cell(by_kernel[kernel][c]) if c in by_kernel[kernel] else "–" for c in columns]
        lines.append(f"| `{kernel}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def regenerate(text: str, base: Path) -> str:
    def fill(m: re.Match) -> str:
        run = (base / m.group("run")).resolve()
        return m.group(1) + table(run) + m.group(4)

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
