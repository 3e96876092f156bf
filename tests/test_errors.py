"""Bad user input: one clear message (the cause and the fix), never a traceback wall.

One test per row of issue 5's table. Most go through `flan.train.main` in-process (the
same code as `python -m flan.train`, minus the interpreter start); one row also runs as a
real subprocess to check what a user sees on stderr.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from tiny_training import LENGTHS, StandInConfig, StandInModel, SyntheticIterator
from tiny_training import train as run_train

from flan import train as train_lib
from flan.training import checkpoints

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Mock data, one small task, short lengths: these runs stop at the check or train 2 steps.
_SMALL = [
  "--gin.MIXTURE_OR_TASK_NAME='flan_rte_train'",
  "--gin.TRAIN_STEPS=2",
  "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 8}",
]


@pytest.fixture(autouse=True)
def _in_project_root(monkeypatch, clean_gin):
  monkeypatch.chdir(ROOT)


def _error(capsys, tmp_path, *flags) -> str:
  """Runs flan.train's main; returns its error message after checking it failed cleanly."""
  code = train_lib.main(
    ["--gin_file=configs/smoke.gin", f"--gin.MODEL_DIR={tmp_path / 'run'}", *_SMALL, *flags]
  )
  err = capsys.readouterr().err
  assert code == 1, err[-2000:]
  assert "Traceback" not in err, err[-2000:]
  messages = [line for line in err.splitlines() if line.startswith("error: ")]
  assert len(messages) == 1, err[-2000:]
  return err[err.index("error: ") :]


def test_unknown_gin_binding_suggests_the_parameter(capsys, tmp_path):
  msg = _error(capsys, tmp_path, "--gin.RunOptions.trian_steps=5")
  assert "--gin.RunOptions.trian_steps: RunOptions has no parameter 'trian_steps'" in msg
  assert msg.count("Did you mean train_steps?") == 1


def test_macro_typo_suggests_the_close_macro(capsys, tmp_path):
  msg = _error(capsys, tmp_path, "--gin.TRAIN_STEP=5")
  assert "--gin.TRAIN_STEP sets a macro that no gin file uses. Did you mean TRAIN_STEPS?" in msg


def test_unknown_mixture_lists_close_matches(capsys, tmp_path):
  msg = _error(capsys, tmp_path, "--gin.MIXTURE_OR_TASK_NAME='flan_holdout_nli_trian'")
  assert "Unknown seqio task or mixture 'flan_holdout_nli_trian'" in msg
  assert "flan_holdout_nli_train" in msg.split("Did you mean:")[1]


def test_unknown_task_lists_close_matches(capsys, tmp_path):
  msg = _error(capsys, tmp_path, "--gin.MIXTURE_OR_TASK_NAME='flan_rte_trian'")
  assert "Unknown seqio task or mixture 'flan_rte_trian'. Did you mean: flan_rte_train" in msg


def test_unknown_cluster_lists_close_matches_before_training(capsys, tmp_path):
  msg = _error(capsys, tmp_path, "--gin.HELDOUT_CLUSTER='comonsense'")
  assert "Unknown cluster 'comonsense'. Did you mean 'commonsense'" in msg
  assert not (tmp_path / "run").exists()  # refused before anything was written


def test_dataset_not_prepared_names_builder_data_dir_and_prepare_command(capsys, tmp_path):
  empty = tmp_path / "tfds"
  empty.mkdir()
  msg = _error(capsys, tmp_path, f"--gin.DATA_DIR='{empty}'")
  assert "TFDS builder 'super_glue/rte" in msg and "(FLAN dataset 'rte')" in msg
  assert f"is not prepared in data_dir {str(empty)!r}" in msg
  assert "scripts/prepare_data.py" in msg and "rte" in msg.split("prepare_data.py")[1]


def test_template_with_an_unknown_field_names_file_index_and_field(capsys, tmp_path, monkeypatch):
  from flan.data import templates

  broken = tmp_path / "templates"
  shutil.copytree(templates.TEMPLATES_DIR, broken)
  text = (broken / "rte.yaml").read_text()
  (broken / "rte.yaml").write_text(text.replace("{hypothesis}", "{hypotesis}", 1))
  monkeypatch.setattr(templates, "TEMPLATES_DIR", broken)
  templates.load.cache_clear()  # loaded templates are cached per dataset
  try:
    msg = _error(capsys, tmp_path)
  finally:
    monkeypatch.undo()
    templates.load.cache_clear()
  assert f"{broken / 'rte.yaml'}: template 0: unknown field {{hypotesis}}" in msg
  assert "{hypothesis}" in msg  # the fields it could have used


def test_batch_size_not_divisible_by_the_data_parallel_size(capsys, tmp_path):
  msg = _error(capsys, tmp_path, "--gin.BATCH_SIZE=6")
  assert "BATCH_SIZE=6 is not divisible by the data-parallel size 8" in msg
  assert "use a multiple of 8" in msg


def test_examples_longer_than_the_feature_lengths_are_truncated_and_counted(tmp_path):
  import tensorflow_datasets as tfds

  from flan.data import input_pipeline, tasks

  lengths = {"inputs": 8, "targets": 2}  # every RTE example is longer
  out = run_train(
    model=StandInModel(),
    mixture_or_task_name="flan_rte_train",
    task_feature_lengths=lengths,
    train_steps=3,
    model_dir=str(tmp_path),
    batch_size=8,
    use_mock_data=True,
    log_every=1,
    checkpoint_period=100,
  )
  assert out["step"] == 3
  truncated = [h["data/truncated_examples"] for h in out["history"]]
  assert truncated[-1] > truncated[0] > 0
  with tfds.testing.mock_data(num_examples=16, max_value=3):
    tasks.register()
    it = input_pipeline.make_train_iterator("flan_rte_train", lengths, 8, 0)
    batch = next(it)
    it.close()
  assert batch["encoder_input_tokens"].shape == (8, 8)
  assert it.stats["truncated_examples"] == it.stats["examples"] > 0


def test_checkpoint_of_another_model_size_names_the_parameter_and_shapes(capsys, tmp_path):
  common = dict(
    mixture_or_task_name="synthetic",
    task_feature_lengths=LENGTHS,
    train_steps=1,
    model_dir=str(tmp_path),
    batch_size=8,
    checkpoint_period=1,
    make_iterator=SyntheticIterator,
  )
  run_train(model=StandInModel(), **common)
  bigger = StandInModel(StandInConfig(mlp_dim=96))
  with pytest.raises(checkpoints.CheckpointError) as e:
    run_train(model=bigger, **dict(common, train_steps=2))
  msg = str(e.value)
  assert "is for another model size: parameter 'wi' has shape (32, 64)" in msg
  assert "(32, 96) in the model being trained" in msg and "checkpoint_1" in msg
  # What main prints for it: one line.
  from flan.cli import report_user_errors

  with report_user_errors():
    raise e.value
  err = capsys.readouterr().err
  assert [l for l in err.splitlines() if l.startswith("error: ")] == [
    f"error: {msg.splitlines()[0]}"
  ]


def test_initial_checkpoint_of_another_size_says_which_sizes_differ(tmp_path):
  from tiny_training import tiny_model

  sizes = r"does not fit the model: \(checkpoint, model\) = .*'mlp_dim': \(40, 64\)"
  with pytest.raises(checkpoints.CheckpointError, match=sizes):
    run_train(
      model=tiny_model(),
      mixture_or_task_name="synthetic",
      task_feature_lengths=LENGTHS,
      train_steps=1,
      model_dir=str(tmp_path),
      batch_size=8,
      make_iterator=SyntheticIterator,
      initial_checkpoint_path=str(ROOT / "tests/testdata/hf_tiny_t5"),
    )


def test_missing_vocabulary_file(capsys, tmp_path):
  msg = _error(capsys, tmp_path, "--gin.VOCABULARY='/nonexistent/spiece.model'")
  assert "SentencePiece model not found: '/nonexistent/spiece.model'" in msg


def test_model_dir_not_writable(capsys, tmp_path):
  code = train_lib.main(["--gin_file=configs/smoke.gin", "--gin.MODEL_DIR=/proc/flan_run"])
  err = capsys.readouterr().err
  assert code == 1 and "Traceback" not in err
  assert "MODEL_DIR='/proc/flan_run' is not writable" in err
  assert "set --gin.MODEL_DIR to a directory you can write to" in err


@pytest.mark.slow
def test_python_m_flan_train_prints_one_message_and_exits_1(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "flan.train",
      "--gin_file=configs/smoke.gin",
      f"--gin.MODEL_DIR={tmp_path}",
      "--gin.MIXTURE_OR_TASK_NAME='flan_holdout_nli_trian'",
    ],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=180,
  )
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1 and "Did you mean: flan_holdout_nli_train" in errors[0]


# Issue 13's rows: each also checks that a file the previous run wrote is left as it was.


def _error_keeping_files(capsys, tmp_path, *flags) -> str:
  """`_error`, on a MODEL_DIR holding a previous run's config.gin, which must not change."""
  run = tmp_path / "run"
  run.mkdir(exist_ok=True)
  (run / "config.gin").write_text("# the previous run's config\n")
  msg = _error(capsys, tmp_path, *flags)
  assert (run / "config.gin").read_text() == "# the previous run's config\n"
  return msg


def test_a_model_dir_in_use_by_another_trainer_names_the_holder(capsys, tmp_path):
  import json
  import socket

  from flan.training import run_lock

  (tmp_path / "run").mkdir()
  lock = tmp_path / "run" / run_lock.LOCK_NAME
  holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": "2026-11-28T10:00:00"}
  lock.write_text(json.dumps(holder))
  msg = _error_keeping_files(capsys, tmp_path)
  assert (
    f"is in use by another trainer: pid {os.getpid()} on host {socket.gethostname()} "
    "(started 2026-11-28T10:00:00)"
  ) in msg
  assert json.loads(lock.read_text()) == holder  # the holder's lock is left alone


def test_a_vocabulary_file_that_is_not_sentencepiece(capsys, tmp_path):
  bogus = tmp_path / "vocab.txt"
  bogus.write_text("hello\nworld\n")
  msg = _error_keeping_files(capsys, tmp_path, f"--gin.VOCABULARY='{bogus}'")
  assert f"VOCABULARY='{bogus}' is not a SentencePiece model" in msg


def test_template_yaml_syntax_error_names_file_and_line(capsys, tmp_path, monkeypatch):
  from flan.data import templates

  broken = tmp_path / "templates"
  shutil.copytree(templates.TEMPLATES_DIR, broken)
  lines = (broken / "rte.yaml").read_text().splitlines()
  at = next(i for i, l in enumerate(lines) if l.strip().startswith("- input:"))
  lines.insert(at + 1, "    target: [unclosed")
  (broken / "rte.yaml").write_text("\n".join(lines) + "\n")
  monkeypatch.setattr(templates, "TEMPLATES_DIR", broken)
  templates.load.cache_clear()
  try:
    msg = _error_keeping_files(capsys, tmp_path)
  finally:
    monkeypatch.undo()
    templates.load.cache_clear()
  assert f"{broken / 'rte.yaml'}:" in msg and "YAML syntax error" in msg
  line = int(msg.split(f"{broken / 'rte.yaml'}:")[1].split(":")[0])
  assert at + 1 <= line <= at + 4  # where the parser gave up, near the broken line


def test_a_missing_tfds_shard_names_the_file_and_how_to_prepare_it(capsys, tmp_path):
  samples = pathlib.Path(os.environ.get("FLAN_TEST_DATA_DIR", "/nonexistent"))
  if not samples.is_dir():
    pytest.skip("FLAN_TEST_DATA_DIR (real TFDS samples) is not set")
  data = tmp_path / "tfds"
  shutil.copytree(samples / "super_glue" / "rte", data / "super_glue" / "rte")
  for path in data.rglob("*"):
    path.chmod(0o755 if path.is_dir() else 0o644)
  shard = next(data.rglob("super_glue-train.tfrecord-*"))
  shard.unlink()
  msg = _error_keeping_files(capsys, tmp_path, f"--gin.DATA_DIR='{data}'")
  assert "a data file is missing or damaged" in msg and str(shard) in msg
  assert "scripts/prepare_data.py --datasets rte" in msg


@pytest.mark.parametrize(
  "flag, message",
  [
    ("--gin.TRAIN_STEPS=1e2", "TRAIN_STEPS must be a positive integer, got 100.0 (float)"),
    ("--gin.TRAIN_STEPS=0", "TRAIN_STEPS must be a positive integer, got 0"),
    ("--gin.TRAIN_STEPS=-5", "TRAIN_STEPS must be a positive integer, got -5"),
    ("--gin.BATCH_SIZE=eight", "BATCH_SIZE must be a positive integer, got 'eight'"),
    ("--gin.LEARNING_RATE=1e-2x", "LEARNING_RATE must be a number, got '1e-2x'"),
    ("--gin.MESH=data", "MESH must be a dict of axis name -> size"),
    ("--gin.BATCH_SIZE=-8", "BATCH_SIZE must be a positive integer, got -8"),
    ("--gin.KEEP_CHECKPOINTS=0", "KEEP_CHECKPOINTS must be a positive integer, got 0"),
    ("--gin.NAN_POLICY='halt'", "NAN_POLICY must be one of ('stop', 'skip'), got 'halt'"),
    ("--gin.MESH={'data': 'all'}", "MESH must be a dict of axis name -> size"),
    ("--gin.MODEL_DIR=''", "MODEL_DIR must be a non-empty string, got ''"),
    ("--gin.LEARNING_RATE='fast'", "LEARNING_RATE must be a number, got 'fast'"),
  ],
)
def test_an_option_of_the_wrong_type_or_range_names_its_macro_before_any_data(
  capsys, tmp_path, flag, message
):
  msg = _error(capsys, tmp_path, flag)
  assert message in msg
  assert f"--gin.{message.split()[0]}=" in msg  # how to fix it
  assert not (tmp_path / "run").exists()  # checked before anything is written or read


def test_paths_in_options_expand_the_home_directory_and_variables(monkeypatch, tmp_path):
  from flan.training import options

  monkeypatch.setenv("FLAN_TEST_ROOT", str(tmp_path))
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  run = options.RunOptions(train_steps=1, model_dir="$FLAN_TEST_ROOT/run")
  data = options.DataOptions(
    "flan_rte_train", LENGTHS, data_dir="~/tfds", vocabulary="${FLAN_TEST_ROOT}/spiece.model"
  )
  ckpt = options.CheckpointOptions(initial_checkpoint_path="~/ckpt")
  assert run.model_dir == str(tmp_path / "run")
  assert data.data_dir == str(tmp_path / "home" / "tfds")
  assert data.vocabulary == str(tmp_path / "spiece.model")
  assert ckpt.initial_checkpoint_path == str(tmp_path / "home" / "ckpt")
  assert options.DataOptions("flan_rte_train", LENGTHS, vocabulary="byte").vocabulary == "byte"
