"""The code base passes the linter and is formatted (ruff, configured in pyproject.toml)."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGETS = ["flan", "tests", "scripts"]


def _ruff() -> list[str]:
  exe = shutil.which("ruff", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("ruff")
  if exe is None:
    pytest.fail("ruff is not installed: it is in the test extra (pip install -e '.[test]')")
  return [exe]


def test_ruff_check_finds_nothing():
  proc = subprocess.run(
    [*_ruff(), "check", "--no-cache", *TARGETS], cwd=ROOT, capture_output=True, text=True
  )
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_ruff_format_would_change_nothing():
  proc = subprocess.run(
    [*_ruff(), "format", "--check", "--no-cache", *TARGETS],
    cwd=ROOT,
    capture_output=True,
    text=True,
  )
  assert proc.returncode == 0, (
    proc.stdout[-4000:] + proc.stderr[-2000:] + "\nrun `ruff format flan tests scripts`"
  )
