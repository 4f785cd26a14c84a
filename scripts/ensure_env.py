#!/usr/bin/env python3
"""Makes sure a virtual environment with the plotting scripts' packages exists, and prints the
path of its Python.

    python3 scripts/ensure_env.py VENV_DIR [--requirements FILE]

The first call creates VENV_DIR and installs FILE (scripts/requirements.txt unless given) into
it from PyPI; later calls find a stamp there (a hash of FILE's requirements and this Python's
version) and return at once. A changed requirement, or another Python, re-creates the
environment. Callers that ask at the same time (several test binaries) take turns on a lock
file beside VENV_DIR, so one creates and the others reuse.

Where `python3 -m venv` cannot give the environment a pip (Debian without python3-venv has no
ensurepip), the environment is made `--without-pip` and pip is installed into it from a pip
wheel, fetched by this Python's own pip if it has one, else straight from PyPI.

`cargo test` runs this from tests/scripts.rs (VENV_DIR is target/pyenv). On failure it names
the command that failed, with that command's output, and exits 1.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

STAMP = "threadcenter-stamp.json"
# How much of a failed command's output to show: pip's reason is at the end.
SHOWN_LINES = 60


class Failed(Exception):
    """A step failed; the message says which command and what it printed."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("venv", type=Path, help="the environment's folder")
    parser.add_argument(
        "--requirements",
        type=Path,
        default=Path(__file__).resolve().parent / "requirements.txt",
        help="the packages to install (default: scripts/requirements.txt)",
    )
    # For testing the fallbacks on a machine that does not need them.
    parser.add_argument("--without-ensurepip", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--without-system-pip", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    venv = args.venv.resolve()
    try:
        want = stamp_for(args.requirements)
        venv.parent.mkdir(parents=True, exist_ok=True)
        with open(venv.parent / f"{venv.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if read_stamp(venv) != want:
                create(venv, args.requirements, args)
                (venv / STAMP).write_text(json.dumps(want, indent=1) + "\n")
    except Failed as e:
        print(f"ensure_env: {e}", file=sys.stderr)
        return 1
    print(python_of(venv))
    return 0


def stamp_for(requirements: Path) -> dict[str, str]:
    try:
        text = requirements.read_text()
    except OSError as e:
        raise Failed(f"cannot read {requirements}: {e}") from e
    # Only the requirements count: a changed comment installs nothing new. Comments are cut
    # as pip cuts them: from a `#` at the start of a line or after whitespace.
    lines = (re.sub(r"(^|\s)#.*$", "", line).strip() for line in text.splitlines())
    wanted = "\n".join(line for line in lines if line)
    return {
        "requirements_sha256": hashlib.sha256(wanted.encode()).hexdigest(),
        "python": sys.version,
        "base": sys.executable,
    }


def read_stamp(venv: Path) -> dict[str, str] | None:
    """The stamp of a finished environment, or None. Written last, so a half-made environment
    (an interrupted install) has none and is made again."""
    try:
        stamp = json.loads((venv / STAMP).read_text())
    except (OSError, ValueError):
        return None
    return stamp if python_of(venv).exists() else None


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python3"


def create(venv: Path, requirements: Path, args: argparse.Namespace) -> None:
    if venv.exists():
        print(f"ensure_env: re-creating {venv} (unfinished, or {requirements} or Python "
              "changed)",
              file=sys.stderr)
        shutil.rmtree(venv)
    else:
        print(f"ensure_env: creating {venv} with {requirements} (once; a few minutes)",
              file=sys.stderr)
    python = python_of(venv)
    made = False
    if not args.without_ensurepip:
        try:
            run([sys.executable, "-m", "venv", str(venv)])
            made = True
        except Failed as e:
            # Debian's python3 without python3-venv: ensurepip is missing or disabled.
            print(f"ensure_env: {e}\nensure_env: making it without pip, then adding pip",
                  file=sys.stderr)
            shutil.rmtree(venv, ignore_errors=True)
    if not made:
        run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
        bootstrap_pip(python, use_system_pip=not args.without_system_pip)
    run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(requirements)])


def bootstrap_pip(python: Path, use_system_pip: bool) -> None:
    """Installs pip into an environment made without one, from a pip wheel: a wheel of pip
    can run itself (`python pip.whl/pip install pip.whl`)."""
    with tempfile.TemporaryDirectory() as tmp:
        if use_system_pip and has_system_pip():
            run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--only-binary", ":all:", "--dest", tmp, "pip"])
            wheels = sorted(Path(tmp).glob("pip-*.whl"))
            if not wheels:
                raise Failed(f"pip download left no pip wheel in {tmp}")
            wheel = wheels[-1]
        else:
            wheel = fetch_pip_wheel(Path(tmp))
        run([str(python), f"{wheel}/pip", "install", "--quiet", "--no-index", str(wheel)])


def has_system_pip() -> bool:
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"],
                           capture_output=True, check=False)
    return probe.returncode == 0


def fetch_pip_wheel(dest: Path) -> Path:
    """The newest pip wheel, straight from PyPI's JSON API (pip's own certificate setting,
    PIP_CERT, is honoured)."""
    context = ssl.create_default_context(cafile=os.environ.get("PIP_CERT") or None)
    url = "https://pypi.org/pypi/pip/json"
    try:
        with urllib.request.urlopen(url, timeout=60, context=context) as r:
            files = json.load(r)["urls"]
        wheel = next(f for f in files if f["filename"].endswith(".whl"))
        path = dest / wheel["filename"]
        # An index mirror may give the file's address relative to the API's.
        wheel["url"] = urllib.parse.urljoin(url, wheel["url"])
        with urllib.request.urlopen(wheel["url"], timeout=120, context=context) as r:
            data = r.read()
    except (OSError, ValueError, KeyError, StopIteration) as e:
        raise Failed(f"cannot fetch a pip wheel from {url}: {e}") from e
    if hashlib.sha256(data).hexdigest() != wheel["digests"]["sha256"]:
        raise Failed(f"the pip wheel from {wheel['url']} does not match its sha256")
    path.write_bytes(data)
    return path


def run(cmd: list[str]) -> None:
    """Runs a step; on failure raises with the command line and the end of its output."""
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False)
    if done.returncode != 0:
        shown = "\n".join(done.stdout.strip().splitlines()[-SHOWN_LINES:])
        raise Failed(f"`{' '.join(cmd)}` failed with exit status {done.returncode}:\n{shown}")


if __name__ == "__main__":
    sys.exit(main())
