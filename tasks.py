#!/usr/bin/env python3
"""pglab's command runner: the two README commands and a few helpers.

    python3 tasks.py lab     # set up .venv if needed, then open the lab in the browser
    python3 tasks.py test    # set up .venv if needed, then lint and run the whole test suite
    python3 tasks.py bench   # run the benchmarks (python -m pglab bench)
    python3 tasks.py dev     # the lab with the file watcher on: pages reload when you save

Only the standard library is used here, so this file runs before anything is installed.
The virtual environment is rebuilt only when a requirements file or pyproject.toml changes (a
hash stamp). pglab itself is installed into it editable (`pip install -e .`), so
`.venv/bin/pglab ...` and `.venv/bin/python -m pglab ...` work from any directory.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def _sh(*cmd: str | Path, **kw) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)


def setup(requirements: str) -> None:
    """Create .venv and install `requirements` unless the stamp says it is already there."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs under any python3
        sys.exit(f"pglab needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    req = ROOT / requirements
    digest = hashlib.sha256()
    for name in _stamped_files(requirements):
        digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes())
    stamp = VENV / f".stamp-{req.stem}"
    if stamp.exists() and stamp.read_text() == digest.hexdigest() and PY.exists():
        return
    if not PY.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    _sh(PY, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", req)
    # pglab itself, editable: the console script and `import pglab` from anywhere. --no-deps:
    # the pinned requirements above are the dependencies; pip must not re-resolve them.
    _sh(PY, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps", "-e", ".")
    # Compile the CPU training kernels now (cached on disk), not during the first run.
    _sh(PY, "-c", "import pglab.algos; pglab.algos.warm_up()")
    stamp.write_text(digest.hexdigest())


def _stamped_files(requirements: str) -> list[str]:
    """The files whose contents decide whether .venv is up to date: ``requirements`` with every
    file it includes (``-r other.txt``, recursively), requirements.txt and pyproject.toml."""
    seen: set[str] = set()
    todo = [requirements, "requirements.txt"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in (ROOT / name).read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in ("-r", "--requirement"):
                todo.append(parts[1])
    return [*sorted(seen), "pyproject.toml"]


def lab(args: list[str]) -> None:
    setup("requirements.txt")
    port = os.environ.get("PGLAB_PORT", "8501")
    cmd = [BIN / "streamlit", "run", "app.py", "--server.port", port, *args]
    print(f"pglab: opening http://localhost:{port}", flush=True)
    os.execv(str(cmd[0]), [str(c) for c in cmd])


def dev(args: list[str]) -> None:
    lab(["--server.fileWatcherType", "auto", "--server.runOnSave", "true", *args])


def test(args: list[str]) -> None:
    setup("requirements-dev.txt")
    _sh(BIN / "ruff", "check", ".")
    _sh(BIN / "ruff", "format", "--check", ".")
    result = subprocess.run([str(PY), "-m", "pytest", *args], cwd=ROOT)
    sys.exit(result.returncode)


def bench(args: list[str]) -> None:
    setup("requirements-dev.txt")
    _sh(PY, "-m", "pglab", "bench", *args)


COMMANDS = {"lab": lab, "test": test, "bench": bench, "dev": dev}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python3 tasks.py {{{'|'.join(COMMANDS)}}} [args...]")
    try:
        COMMANDS[sys.argv[1]](sys.argv[2:])
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)
