"""pglab is an installable package: a wheel with its dependencies and a `pglab` console script.

The install goes into a throw-away prefix (no build isolation: the venv's setuptools builds
it), so the shared .venv is never touched; the script then runs from another directory,
where ``import pglab`` can only come from the installed copy.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tasks():
    spec = importlib.util.spec_from_file_location("pglab_tasks", ROOT / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pip_install_gives_a_console_script_that_works_elsewhere(tmp_path):
    # build from a copy, so the build's scratch folders never land in the repo
    src = tmp_path / "src"
    shutil.copytree(ROOT / "pglab", src / "pglab", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "requirements.txt", "requirements-sweep.txt"):
        shutil.copy(ROOT / name, src / name)
    prefix = tmp_path / "prefix"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q",
         "--no-deps", "--no-build-isolation", "--prefix", str(prefix), str(src)],
        check=True, cwd=tmp_path, capture_output=True, timeout=300,
    )  # fmt: skip
    purelib = sysconfig.get_path("purelib", vars={"base": str(prefix)})
    script = prefix / "bin" / "pglab"
    assert script.exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": purelib}
    where = subprocess.run(
        [str(script), "--help"], cwd=elsewhere, env=env,
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "sweep" in where.stdout and "train" in where.stdout
    assert where.stdout.count("pglab") >= 1 and "No module named" not in where.stderr
    meta = next(Path(purelib).glob("pglab-*.dist-info")) / "METADATA"
    text = meta.read_text()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert f"Requires-Dist: {line}" in text  # the wheel carries the exact pins
    assert 'Requires-Dist: ray==2.60.0; extra == "sweep"' in text
    frontend = Path(purelib) / "pglab" / "ui" / "frontend"  # the live charts' component
    assert {p.name for p in frontend.iterdir()} >= {"index.html", "livecharts.js"}


def test_venv_stamp_covers_pyproject_and_included_requirements():
    files = _tasks()._stamped_files("requirements-dev.txt")
    assert "pyproject.toml" in files
    assert {"requirements.txt", "requirements-dev.txt", "requirements-sweep.txt"} <= set(files)
    assert "requirements-sweep.txt" not in _tasks()._stamped_files("requirements.txt")
