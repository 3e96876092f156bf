"""Every command in the README's fenced bash blocks runs, so one that fails as printed fails CI.

A command is one line of a ```bash block (backslash continuations joined, comments dropped),
split at `&&` into parts; each part is either run from the checkout's root or listed in
SKIPPED with the reason it cannot run here. Before running, a part is changed only by these
substitutions, so what runs is what a reader types:

Substitutions (README text -> what runs, and why):
- `python`, `python3.11`, `.venv/bin/python` at the start -> this interpreter (the environment
  under test);
- `../shared/data/tfds` -> conftest's DATA_DIR (FLAN_TEST_DATA_DIR), and
  `../shared/vocab/t5_spiece.model` -> conftest's VOCAB (FLAN_TEST_VOCAB): the worktree may sit
  elsewhere; any other `../shared/...` -> the same path under SHARED (the parent of DATA_DIR's
  `data/`);
- `--root /runs` -> `--root <tmp>/runs`: no writes outside tmp;
- `~/flan_smoke` -> the smoke run's MODEL_DIR, one temporary directory for the session (the
  README's commands that read the smoke run's checkpoint run after it);
- a command in SHORTENED -> its extra flags appended: a long run, cut short.

A command reading ../shared skips (with the reason) where that data is absent. Commands run
in README order: one that reads what an earlier one writes (templates_flan/) skips with that
reason when run alone. Exit status 0 is required, except where EXIT_CODES allows another with
the output that proves it worked.
"""

import atexit
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import pytest
from conftest import DATA_DIR, VOCAB

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# README text in a command part -> why that part cannot run in a test.
SKIPPED = {
  "-m venv": "creates the environment these tests run in",
  "pip install": "installs packages from the network; this environment is that install",
  "-m pytest": "the test suite itself",
  "prepare_data.py --data_dir ~/tensorflow_datasets": "downloads the 62 datasets (internet, "
  "hours); tests/test_cli.py covers offline",
  "configs/experiments/holdout_nli.gin": "FLAN's T5 1.1 base run: 30k steps from a real "
  "pretrained checkpoint (/ckpts/...) on the full data",
  "flan.evaluate --gin_file=configs/models/base.gin": "evaluates the trained /runs/holdout_nli "
  "against a real T5 checkpoint",
  "/ckpts/flan_t5_small/": "evaluates a real FLAN-T5 t5x checkpoint; tests/test_t5x.py loads a "
  "tiny one written in t5x's format",
  "MIXTURE_OR_TASK_MODULE=": "trains T5-small from a real checkpoint on the reader's own module; "
  "tests/test_user_tasks.py runs the same flags on a tiny model",
  "benchmark_data.py": "a benchmark (minutes); its figures are in the README",
  "benchmark_train.py": "a benchmark (many minutes, needs [bench]); figures in the README",
  "benchmark_scale.py": "a benchmark (many minutes: scaled data, fresh processes); figures "
  "in the README",
  "benchmark_eval.py": "a benchmark (minutes: T5-small on real samples); figures in the README",
}
# README text in a command -> flags appended to run it briefly (the smoke run takes minutes).
SHORTENED = {
  "-m flan.train --gin_file=configs/smoke.gin": [
    "--gin.TRAIN_STEPS=2",
    '--gin.MODEL_DIR="{smoke}"',
    "--gin.EVAL_MAX_EXAMPLES=2",
    "--gin.EVAL_NUM_TEMPLATES=1",
  ],
}
# README text -> (allowed exit codes, text the output must then hold).
EXIT_CODES = {
  "prepare_data.py --check": ((0, 1), "builders)"),  # 1: some builder is not prepared
}
SHARED = DATA_DIR.parent.parent  # ../shared/data/tfds -> ../shared
# README text -> (a path an earlier README command writes, that command).
SMOKE_DIR = pathlib.Path(tempfile.mkdtemp(prefix="flan_readme_smoke_")) / "run"
atexit.register(shutil.rmtree, SMOKE_DIR.parent, ignore_errors=True)
NEEDS = {
  '--gin.CHECKPOINT_PATH=\\"~/flan_smoke\\"': (
    SMOKE_DIR,
    "-m flan.train --gin_file=configs/smoke.gin",
  ),
  "--flan_templates_dir templates_flan": (
    ROOT / "templates_flan",
    "scripts/import_flan_templates.py",
  ),
}
_INTERPRETER = re.compile(r"^(\.venv/bin/python|python3\.11|python)(?=\s)")


def readme_commands(text: str) -> list[str]:
  """The command parts of every ```bash block, in order."""
  parts = []
  for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S):
    block = re.sub(r"\\\n\s*", " ", block)  # continuation lines
    for line in block.splitlines():
      line = re.sub(r"(^|\s)#.*$", "", line).strip()  # comments
      parts += [p.strip() for p in line.split("&&") if p.strip()]
  return parts


COMMANDS = readme_commands(README.read_text())


def _skip_reason(command: str) -> str | None:
  return next((why for text, why in SKIPPED.items() if text in command), None)


def as_run(command: str, tmp: pathlib.Path) -> str:
  """The command with the substitutions of the module docstring applied."""
  run = _INTERPRETER.sub(shlex.quote(sys.executable), command)
  run = run.replace("../shared/data/tfds", str(DATA_DIR))
  run = run.replace("../shared/vocab/t5_spiece.model", str(VOCAB))
  run = run.replace("../shared/", f"{SHARED}/")
  run = run.replace("--root /runs", f"--root {tmp / 'runs'}")
  run = run.replace("~/flan_smoke", str(SMOKE_DIR))
  for text, flags in SHORTENED.items():
    if text in run:
      run += " " + " ".join(shlex.quote(f.replace("{smoke}", str(SMOKE_DIR))) for f in flags)
  return run


def test_every_readme_command_is_run_or_skipped_for_a_stated_reason():
  assert len(COMMANDS) >= 15, COMMANDS  # the parser found the blocks
  assert all(
    _INTERPRETER.match(c) or _skip_reason(c) or c.startswith("scripts/") for c in COMMANDS
  ), [c for c in COMMANDS if not _INTERPRETER.match(c)]
  for table in (SKIPPED, SHORTENED, EXIT_CODES, NEEDS):  # no stale entry
    for text in table:
      assert any(text in c for c in COMMANDS), f"{text!r} is in no README command"


def test_substitutions_keep_the_command_and_shorten_only_long_runs(tmp_path):
  smoke = next(c for c in COMMANDS if "flan.train --gin_file=configs/smoke.gin" in c)
  run = as_run(smoke, tmp_path)
  assert run.startswith(shlex.quote(sys.executable) + " -m flan.train --gin_file=")
  assert "--gin.TRAIN_STEPS=2" in run and str(SMOKE_DIR) in run
  show = next(c for c in COMMANDS if "flan.show --list" in c)
  assert as_run(show, tmp_path) == f"{shlex.quote(sys.executable)} -m flan.show --list"


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=[c[:60] for c in COMMANDS])
def test_readme_command_works_as_printed(command, tmp_path):
  reason = _skip_reason(command)
  if reason:
    pytest.skip(f"README command not run here: {reason}")
  if "../shared/data" in command and not DATA_DIR.is_dir():
    pytest.skip(f"realdata: no prepared TFDS data at {DATA_DIR}")
  if "../shared/vocab" in command and not VOCAB.is_file():
    pytest.skip(f"realdata: no T5 SentencePiece model at {VOCAB}")
  if "../shared/" in command and not SHARED.is_dir():
    pytest.skip(f"realdata: no {SHARED}")
  for text, (path, writer) in NEEDS.items():
    if text in command and not path.exists():
      pytest.skip(f"reads {path.name}/, which the README's {writer} command writes first")
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run(
    ["bash", "-c", as_run(command, tmp_path)],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )
  output = proc.stdout + proc.stderr
  codes, proof = next(
    ((c, p) for text, (c, p) in EXIT_CODES.items() if text in command), ((0,), "")
  )
  assert proc.returncode in codes, f"{command}\nexit {proc.returncode}\n{output[-3000:]}"
  assert proof in output, output[-3000:]
  assert "Traceback" not in output, output[-3000:]
