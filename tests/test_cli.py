"""The command line: each user mistake is exactly one `error:` line, a bug keeps its traceback.

One row per mistake, through the entry points' `main` in-process (the code of
`python -m flan.train`, minus the interpreter start); parsing stops before any data or
model work, so each row takes well under a second. The subprocess test at the end checks
what a user sees on a real terminal.
"""

import importlib.util
import os
import pathlib
import subprocess
import sys

import gin
import pytest

from flan import cli
from flan import evaluate as evaluate_lib
from flan import train as train_lib
from flan.errors import EXIT_USAGE, EXIT_USER_ERROR, UserError

ROOT = pathlib.Path(__file__).resolve().parent.parent
SMOKE = "--gin_file=configs/smoke.gin"


@pytest.fixture(autouse=True)
def _in_project_root(monkeypatch, clean_gin):
  monkeypatch.chdir(ROOT)


def _write(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


# (id, flags, what the one error line must contain). `{tmp}` is the test's tmp_path.
MISTAKES = [
  (
    "gin_file_misspelt",
    ["--gin_file=configs/smok.gin"],
    ["--gin_file=configs/smok.gin: no such file", "Did you mean configs/smoke.gin?"],
  ),
  ("no_gin_file", [], ["No --gin_file given; e.g. python -m flan.train --gin_file="]),
  (
    "gin_import_of_missing_module",
    ["--gin_file={tmp}/imports.gin"],
    [
      "No module named 'nonexistent_module_xyz'",
      "imports.gin",
      "line 1",
      "a gin file imports a module that cannot be imported",
    ],
  ),
  (
    "gin_syntax_error",
    ["--gin_file={tmp}/syntax.gin"],
    ["syntax.gin:2: gin syntax error", "TRAIN_STEPS = = 3"],
  ),
  (
    "gin_include_missing",
    ["--gin_file={tmp}/include.gin"],
    [
      "A gin include names a file found nowhere",
      "include.gin",
      "line 1",
      "include 'configs/nope.gin'",
    ],
  ),
  (
    "gin_include_missing_elsewhere",
    ["--gin_file={tmp}/include2.gin"],
    ["Unable to open file: nope/missing.gin", "include2.gin"],
  ),
  (
    "parameter_misspelt",
    [SMOKE, "--gin.RunOptions.trian_steps=5"],
    [
      "--gin.RunOptions.trian_steps: RunOptions has no parameter 'trian_steps'. "
      "Did you mean train_steps?"
    ],
  ),
  (
    "class_parameter_misspelt",
    [SMOKE, "--gin.network.T5Config.emb_dimm=8"],
    ["network.T5Config has no parameter 'emb_dimm'. Did you mean emb_dim"],
  ),
  (
    "configurable_misspelt",
    [SMOKE, "--gin.trian.train_steps=5"],
    ["--gin.trian.train_steps: no gin configurable is named 'trian'. Did you mean train"],
  ),
  (
    "macro_misspelt",
    [SMOKE, "--gin.TRAIN_STEP=5"],
    ["--gin.TRAIN_STEP sets a macro that no gin file uses. Did you mean TRAIN_STEPS?"],
  ),
  (
    "value_unparsable",
    [SMOKE, "--gin.MESH={'data': -1"],
    ["--gin.MESH: gin cannot parse", "must be a Python literal or a gin reference"],
  ),
  (
    "required_macros_unset",
    ["--gin_file=configs/models/tiny.gin", "--gin_file=configs/runs/finetune.gin"],
    [
      "MIXTURE_OR_TASK_NAME, TRAIN_STEPS, MODEL_DIR, VOCABULARY are required but not set",
      "--gin.VOCABULARY=...",
    ],
  ),
  (
    "required_macro_misspelt",
    [
      "--gin_file=configs/models/tiny.gin",
      "--gin_file=configs/runs/finetune.gin",
      "--gin.MIXTURE_OR_TASK_NAME='flan_rte_train'",
      "--gin.TRAIN_STEPS=1",
      "--gin.MODEL_DIR='{tmp}/run'",
      "--gin.VOCABULRY=None",
    ],
    ["VOCABULARY is required but not set", "--gin.VOCABULRY looks like a typo of VOCABULARY"],
  ),
]
GIN_FILES = {
  "imports.gin": "import nonexistent_module_xyz\n",
  "syntax.gin": "include 'configs/smoke.gin'\nTRAIN_STEPS = = 3\n",
  "include.gin": "include 'configs/nope.gin'\n",
  "include2.gin": "include 'nope/missing.gin'\n",
}


@pytest.mark.parametrize("flags,expected", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_each_mistake_is_one_error_line(capsys, tmp_path, flags, expected):
  for name, text in GIN_FILES.items():
    _write(tmp_path, name, text)
  code = train_lib.main([f.replace("{tmp}", str(tmp_path)) for f in flags])
  err = capsys.readouterr().err
  assert code == EXIT_USER_ERROR, err[-2000:]
  assert "Traceback" not in err, err[-2000:]
  errors = [line for line in err.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, err[-2000:]
  for text in expected:
    assert text in errors[0]
    assert errors[0].count(text) == 1  # a hint is given once
  assert not (tmp_path / "run").exists()  # refused before any work


def test_unknown_flag_is_one_usage_error_line(capsys):
  with pytest.raises(SystemExit) as e:
    train_lib.main([SMOKE, "--gin_fille=configs/smoke.gin"])
  err = capsys.readouterr().err
  assert e.value.code == EXIT_USAGE
  assert [line for line in err.splitlines() if line.startswith("error: ")] == [
    "error: unrecognized arguments: --gin_fille=configs/smoke.gin (see python -m flan.train --help)"
  ]
  assert "usage:" not in err  # one line, not argparse's usage dump


def test_t5x_flags_are_accepted_or_mapped_to_their_macros(tmp_path):
  cli.parse_gin_flags(
    [
      SMOKE,
      "--alsologtostderr",
      "--logtostderr",
      "--multiprocess_gpu",
      f"--tfds_data_dir={tmp_path}",
    ]
  )
  assert gin.query_parameter("DATA_DIR/gin.macro.value") == str(tmp_path)
  gin.clear_config()
  cli.parse_gin_flags(
    [SMOKE, "--coordinator_address=10.0.0.1:1234", "--process_count=2", "--process_index=1"]
  )
  assert gin.query_parameter("COORDINATOR_ADDRESS/gin.macro.value") == "10.0.0.1:1234"
  assert gin.query_parameter("NUM_PROCESSES/gin.macro.value") == 2
  assert gin.query_parameter("PROCESS_ID/gin.macro.value") == 1


def test_a_later_gin_flag_overrides_a_t5x_flag(tmp_path):
  cli.parse_gin_flags([SMOKE, "--tfds_data_dir=/nowhere", f"--gin.DATA_DIR='{tmp_path}'"])
  assert gin.query_parameter("DATA_DIR/gin.macro.value") == str(tmp_path)


@pytest.mark.parametrize(
  "main,prog,macros",
  [
    (
      train_lib.main,
      "python -m flan.train",
      ["MIXTURE_OR_TASK_NAME (required)", "TRAIN_STEPS (required)", "NAN_POLICY"],
    ),
    (
      evaluate_lib.main,
      "python -m flan.evaluate",
      ["CHECKPOINT_PATH (required)", "HELDOUT_CLUSTER (required)", "NUM_SHOTS"],
    ),
  ],
  ids=["train", "evaluate"],
)
def test_help_is_the_entry_points_own_with_macros_and_an_example(capsys, main, prog, macros):
  with pytest.raises(SystemExit) as e:
    main(["--help"])
  out = capsys.readouterr().out
  assert e.value.code == 0
  assert out.startswith(f"usage: {prog} ")
  assert f"  {prog} --gin_file=" in out  # the docstring's example command
  for macro in macros:
    assert f"\n  {macro}" in out
  assert "--tfds_data_dir" in out and "exit status: 0 done; 1 a mistake" in out
  other = "flan.evaluate" if prog.endswith("train") else "flan.train"
  assert f"python -m {other} " not in out.split("\n\n")[0]  # not the other CLI's usage


def test_user_error_from_a_gin_configurable_prints_its_own_message(capsys):
  @gin.configurable
  def entry():
    raise UserError("DATA_DIR is empty; set --gin.DATA_DIR.")

  with cli.report_user_errors():
    entry()
  assert capsys.readouterr().err == "error: DATA_DIR is empty; set --gin.DATA_DIR.\n"


def test_an_internal_value_error_keeps_its_traceback():
  """A bug is not the user's mistake: it propagates (Python prints the traceback)."""
  with pytest.raises(ValueError, match="shapes do not match"):
    with cli.report_user_errors():
      raise ValueError("shapes do not match")  # e.g. a broken invariant inside flan


def test_flan_debug_adds_the_traceback_to_a_user_error(capsys, monkeypatch):
  monkeypatch.setenv("FLAN_DEBUG", "1")
  with cli.report_user_errors():
    raise UserError("bad value")
  err = capsys.readouterr().err
  assert "Traceback" in err and err.splitlines()[-1] == "error: bad value"


def test_user_facing_errors_are_user_errors():
  from flan.data import examples, templates
  from flan.training import checkpoints, run_lock, train_step

  for error in (
    checkpoints.CheckpointError,
    train_step.NonFiniteLossError,
    examples.DataNotPreparedError,
    templates.TemplateError,
    run_lock.RunLockError,
  ):
    assert issubclass(error, UserError), error
  assert issubclass(UserError, ValueError)  # code catching the old ValueErrors still works


def _script(name):
  spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up
  spec.loader.exec_module(module)
  return module


def test_prepare_data_offline_fails_at_once_in_one_line(capsys, tmp_path, monkeypatch):
  script = _script("prepare_data")
  for var in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    monkeypatch.delenv(var, raising=False)

  def unreachable(address, timeout=None):
    raise OSError(101, "Network is unreachable")

  monkeypatch.setattr(script.socket, "create_connection", unreachable)
  monkeypatch.setattr(script, "prepare", lambda *a: pytest.fail("tried to download"))
  assert script.main(["--datasets", "rte,cb", "--data_dir", str(tmp_path)]) == 1
  err = capsys.readouterr().err
  errors = [line for line in err.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "no network" in errors[0] and "Network is unreachable" in errors[0]


def test_missing_data_names_every_missing_builder_at_once(capsys, tmp_path):
  empty = tmp_path / "tfds"
  empty.mkdir()
  code = train_lib.main(
    [
      SMOKE,
      f"--gin.MODEL_DIR='{tmp_path / 'run'}'",
      f"--gin.DATA_DIR='{empty}'",
      "--gin.MIXTURE_OR_TASK_NAME='flan_holdout_sentiment_train'",
    ]
  )
  err = capsys.readouterr().err
  assert code == EXIT_USER_ERROR and "Traceback" not in err
  message = err[err.index("error: ") :]
  from flan.data import mixtures

  missing = mixtures.train_datasets("flan_holdout_sentiment_train")
  assert (
    f"{len(missing)} FLAN datasets that 'flan_holdout_sentiment_train' reads are not "
    "prepared" in message
  )
  assert f"--datasets {','.join(sorted(missing))} --data_dir {empty}" in message
  assert "--gin.USE_MOCK_DATA=True" in message and "--mock_data (flan.show)" in message
  assert "In call to configurable" not in message  # gin's addition is not shown


@pytest.mark.slow
def test_a_real_terminal_sees_one_error_line_per_cli():
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  for module in ("flan.train", "flan.evaluate"):
    proc = subprocess.run(
      [sys.executable, "-m", module, "--gin_file=configs/smok.gin"],
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
    )
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert proc.returncode == EXIT_USER_ERROR and "Traceback" not in proc.stderr, proc.stderr
    assert len(errors) == 1 and "Did you mean configs/smoke.gin?" in errors[0]


def test_the_mock_data_hint_works_for_both_entry_points():
  from flan.data import examples

  assert "--gin.USE_MOCK_DATA=True" in examples.MOCK_HINT
  cli.parse_gin_flags([SMOKE, "--gin.USE_MOCK_DATA=True"])
  assert gin.query_parameter("%USE_MOCK_DATA") is True
  gin.clear_config()
  cli.parse_gin_flags(
    [
      "--gin_file=configs/models/tiny.gin",
      "--gin_file=configs/runs/eval.gin",
      "--gin.CHECKPOINT_PATH='/x'",
      "--gin.HELDOUT_CLUSTER='nli'",
      "--gin.USE_MOCK_DATA=True",
    ],
    run_config="configs/runs/eval.gin",
  )
  assert gin.query_parameter("%USE_MOCK_DATA") is True
