"""Remote paths: every file under MODEL_DIR (checkpoints, config.gin, summaries, evaluation
outputs) is reached through `flan.paths`, so `gs://bucket/run` is never a local `./gs:` folder.

The test points `flan.paths.path` at a local stand-in for the bucket: code that went around
it (plain `open`/`os.makedirs` on the string) would create `./gs:/bucket/run` in the working
directory, and the bucket's stand-in would miss the files.
"""

import os

import pytest
from etils import epath
from tiny_training import LENGTHS, StandInModel, SyntheticIterator
from tiny_training import train as run_train

from flan import paths
from flan.evaluation import report

pytestmark = pytest.mark.usefixtures("clean_gin")


def test_remote_paths_are_kept_as_written_and_local_ones_made_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert str(paths.path("gs://bucket/run/eval")) == "gs://bucket/run/eval"
  assert paths.is_remote("gs://bucket/run") and not paths.is_remote("run")
  assert str(paths.path("run")) == str(tmp_path / "run")
  from flan import evaluate

  assert evaluate.default_output_dir("gs://b/run/checkpoint_7", None, None) == "gs://b/run/eval"
  assert evaluate.default_output_dir("x", "gs://b/run", None) == "gs://b/run/eval"


@pytest.fixture
def bucket(tmp_path, monkeypatch):
  """gs://bucket/... lands in tmp_path/remote/bucket/...; the cwd is tmp_path/cwd."""
  remote = tmp_path / "remote"
  real = paths.path

  def path(value):
    text = os.fspath(value)
    if text.startswith("gs://"):
      return epath.Path(remote / text[len("gs://") :])
    return real(value)

  monkeypatch.setattr(paths, "path", path)
  (tmp_path / "cwd").mkdir()
  monkeypatch.chdir(tmp_path / "cwd")
  return remote


def test_a_gs_model_dir_writes_on_the_bucket_and_never_a_local_gs_folder(tmp_path, bucket):
  out = run_train(
    model=StandInModel(),
    mixture_or_task_name="synthetic",
    task_feature_lengths=LENGTHS,
    train_steps=3,
    model_dir="gs://bucket/run",
    batch_size=8,
    checkpoint_period=3,
    log_every=1,
    make_iterator=SyntheticIterator,
  )
  assert out["step"] == 3
  run = bucket / "bucket" / "run"
  assert (run / "checkpoint_3" / "state").is_dir() and (run / "config.gin").is_file()
  assert (run / "operative_config.gin").is_file()
  assert list((run / "train").glob("events.out.tfevents.*"))
  again = run_train(
    model=StandInModel(),
    mixture_or_task_name="synthetic",
    task_feature_lengths=LENGTHS,
    train_steps=3,
    model_dir="gs://bucket/run",
    batch_size=8,
    checkpoint_period=3,
    make_iterator=SyntheticIterator,
  )
  assert "checkpoint_3" in again["source"]  # the restore reads the bucket too
  assert not any(p.name.startswith("gs:") for p in (tmp_path / "cwd").rglob("*"))


def test_evaluation_outputs_go_to_the_bucket(tmp_path, bucket):
  from test_report import _results

  from flan import evaluate

  output_dir = evaluate.default_output_dir("gs://bucket/run/checkpoint_7", None, None)
  assert output_dir == str(bucket / "bucket" / "run" / "eval")
  report.write_all(
    "gs://bucket/run/eval",
    _results([60.0, 70.0], [50.0, 52.0]),
    [{"model": "tuned", "dataset": "rte", "prediction": "yes"}],
  )
  written = bucket / "bucket" / "run" / "eval"
  for name in ("results.json", "results.md", "scores.png", "predictions/tuned/rte.jsonl"):
    assert (written / name).is_file(), name
  assert not any(p.name.startswith("gs:") for p in (tmp_path / "cwd").rglob("*"))
