"""Never lose a run: MODEL_DIR ownership, verified checkpoints, guards, signals, no code from data.

The README's "Never lose a run" table, one test (or two) per row. The loop tests use the
one-block stand-in model and the synthetic stream (fast to compile); the converter tests use
the tiny Hugging Face fixture. SIGKILL-and-resume is in test_resilience.py; bad input with
one `error:` line in test_errors.py.
"""

import json
import logging
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tiny_training
from tiny_training import LENGTHS, PoisonedModel, StandInModel, SyntheticIterator

from flan import convert
from flan import evaluate as eval_lib
from flan import train as train_lib
from flan.cli import report_user_errors
from flan.model import partitioning
from flan.training import checkpoints, preemption, run_lock, run_record
from flan.training import train_step as trainer

ROOT = pathlib.Path(__file__).resolve().parent.parent
HF_FIXTURE = ROOT / "tests/testdata/hf_tiny_t5"

pytestmark = pytest.mark.usefixtures("clean_gin")


_train = tiny_training.synthetic_run


def _params(step_dir):
  state = ocp.StandardCheckpointer().restore(pathlib.Path(step_dir).absolute() / "state")
  return jax.tree.map(np.asarray, state["params"])


def _assert_same_params(a_dir, b_dir):
  a, b = _params(a_dir), _params(b_dir)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def _snapshot(directory, names):
  return {n: (directory / n).read_bytes() for n in names if (directory / n).is_file()}


def _convert_error(capsys, *argv) -> str:
  """Runs flan.convert's main, which must fail with exit 1 and one `error:` line; returns it."""
  capsys.readouterr()
  with pytest.raises(SystemExit) as e:
    convert.main(list(argv))
  errors = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error: ")]
  assert e.value.code == 1 and len(errors) == 1, errors
  return errors[0]


def _one_error_line(capsys, error) -> str:
  with report_user_errors():
    raise error
  lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error: ")]
  assert len(lines) == 1
  return lines[0]


# --- MODEL_DIR ownership ---------------------------------------------------------------------


def test_a_second_trainer_on_one_model_dir_is_refused_and_the_first_ends_as_if_alone(
  tmp_path, capsys
):
  _train(tmp_path / "alone", 6)
  shared = tmp_path / "shared"
  refusals = []

  class StartsASecondTrainer(SyntheticIterator):
    """At step 3 of the first run, the same command is started again on the same MODEL_DIR."""

    def __next__(self):
      batch = super().__next__()
      if self.position == 3:
        before = _snapshot(shared, ["config.gin", run_record.RECORD_NAME, run_lock.LOCK_NAME])
        try:
          _train(shared, 6)
        except run_lock.RunLockError as e:
          after = _snapshot(shared, ["config.gin", run_record.RECORD_NAME, run_lock.LOCK_NAME])
          refusals.append((e, before, after))
      return batch

  out = _train(shared, 6, iterator=StartsASecondTrainer)
  assert out["step"] == 6 and len(refusals) == 1
  error, before, after = refusals[0]
  assert before == after and len(before) == 3  # the refused run changed nothing
  line = _one_error_line(capsys, error)
  assert f"is in use by another trainer: pid {os.getpid()} on host {socket.gethostname()}" in line
  _assert_same_params(tmp_path / "alone" / "checkpoint_6", shared / "checkpoint_6")
  assert not (shared / run_lock.LOCK_NAME).exists()  # released at the end


def test_a_stale_lock_of_a_dead_process_is_reported_and_taken_over(tmp_path, caplog):
  dead = subprocess.Popen(["true"])
  dead.wait()
  tmp_path.mkdir(exist_ok=True)
  (tmp_path / run_lock.LOCK_NAME).write_text(
    json.dumps({"host": socket.gethostname(), "pid": dead.pid, "started": "earlier"})
  )
  with caplog.at_level(logging.WARNING):
    out = _train(tmp_path, 2)
  assert out["step"] == 2
  assert f"Taking over the stale lock {tmp_path / run_lock.LOCK_NAME} of pid {dead.pid}" in (
    caplog.text
  )
  assert not (tmp_path / run_lock.LOCK_NAME).exists()


def test_a_lock_naming_a_live_pid_of_another_process_start_is_stale():
  me = {
    "host": socket.gethostname(),
    "pid": os.getpid(),
    "process_start": run_lock._process_start(os.getpid()),
  }
  assert not run_lock.is_stale(me)
  assert run_lock.is_stale(dict(me, process_start="1"))  # the pid was reused since


def test_a_lock_of_another_host_is_refused_with_how_to_remove_it(tmp_path):
  (tmp_path / run_lock.LOCK_NAME).write_text(
    json.dumps({"host": "elsewhere", "pid": 1, "started": "2026-01-01T00:00:00+00:00"})
  )
  with pytest.raises(run_lock.RunLockError, match=r"pid 1 on host elsewhere .*delete "):
    run_lock.RunLock(tmp_path).acquire()


def test_a_failing_run_releases_its_lock(tmp_path):
  poisoned = lambda *a, **k: SyntheticIterator(*a, poison_at=(2,), **k)
  with pytest.raises(trainer.NonFiniteLossError):
    _train(tmp_path, 4, model=PoisonedModel(StandInModel()), iterator=poisoned)
  assert not (tmp_path / run_lock.LOCK_NAME).exists()


# --- Checkpoints verified end to end ---------------------------------------------------------


def _flip_bytes(step_dir: pathlib.Path) -> pathlib.Path:
  """XORs 64 bytes in the middle of the checkpoint's largest data file (bit rot)."""
  target = max(
    (p for p in (step_dir / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
  )
  data = bytearray(target.read_bytes())
  middle = len(data) // 2
  data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
  target.write_bytes(bytes(data))
  return target


def test_flipped_bytes_are_detected_moved_aside_and_the_run_heals_bit_identical(tmp_path, caplog):
  _train(tmp_path / "whole", 6, keep_checkpoints=2)
  split = tmp_path / "split"
  _train(split, 4, keep_checkpoints=2)
  assert checkpoints.verify(split / "checkpoint_4")  # every save is sealed by a manifest
  _flip_bytes(split / "checkpoint_4")
  with caplog.at_level(logging.WARNING):
    out = _train(split, 6, keep_checkpoints=2)
  assert out["source"].endswith("checkpoint_2")  # the previous one, not the damaged one
  assert "does not match its checksum" in caplog.text
  aside = list(split.glob("checkpoint_4.corrupt-*"))
  assert len(aside) == 1  # kept for inspection, never read again
  # Fallback re-saves 4 when training reaches it again, and rotation (keep 2) did not count
  # the moved-aside copy.
  assert sorted(p.name for p in split.glob("checkpoint_*") if "." not in p.name) == [
    "checkpoint_4",
    "checkpoint_6",
  ]
  assert checkpoints.verify(split / "checkpoint_4")
  for step in (4, 6):
    _assert_same_params(tmp_path / "whole" / f"checkpoint_{step}", split / f"checkpoint_{step}")


def test_every_checkpoint_corrupt_is_one_error_then_the_rerun_starts_over(tmp_path, capsys):
  _train(tmp_path, 4)
  for step in (2, 4):
    _flip_bytes(tmp_path / f"checkpoint_{step}")
  with pytest.raises(checkpoints.CheckpointError) as e:
    _train(tmp_path, 6)
  line = _one_error_line(capsys, e.value)
  assert "Every checkpoint in MODEL_DIR is unreadable or corrupt and was moved aside" in line
  assert "checkpoint_2 (" in line and "checkpoint_4 (" in line
  assert len(list(tmp_path.glob("checkpoint_*.corrupt-*"))) == 2
  assert _train(tmp_path, 2)["source"] == "initialised from scratch"


def test_an_empty_checkpoint_directory_is_not_a_step(tmp_path):
  _train(tmp_path, 2)
  (tmp_path / "checkpoint_80").mkdir()
  out = _train(tmp_path, 4)
  assert out["source"].endswith("checkpoint_2") and out["step"] == 4
  assert list(tmp_path.glob("checkpoint_80.corrupt-*"))
  assert not (tmp_path / "checkpoint_80").exists()


def test_a_checkpoint_without_a_manifest_is_read_unverified_with_a_warning(tmp_path, caplog):
  _train(tmp_path, 2)
  (tmp_path / "checkpoint_2" / checkpoints.MANIFEST_NAME).unlink()  # crash before sealing
  with caplog.at_level(logging.WARNING):
    out = _train(tmp_path, 4)
  assert out["source"].endswith("checkpoint_2")
  assert "has no manifest" in caplog.text


def test_keep_1_leaves_the_newest_checkpoint_sealed_and_verified(tmp_path, caplog):
  with caplog.at_level(logging.WARNING):
    _train(tmp_path, 6, keep_checkpoints=1)  # each save rotates out the one being sealed
  assert [p.name for p in tmp_path.glob("checkpoint_*")] == ["checkpoint_6"]
  assert checkpoints.verify(tmp_path / "checkpoint_6")
  assert "manifest" not in caplog.text


def test_keep_checkpoints_0_is_refused_by_rotation_itself(tmp_path):
  with pytest.raises(ValueError, match="KEEP_CHECKPOINTS=0 would delete every checkpoint"):
    checkpoints.Checkpoints(str(tmp_path), keep=0)


def test_evaluate_falls_back_from_a_corrupt_newest_checkpoint_without_moving_it(tmp_path, caplog):
  _train(tmp_path, 4)
  _flip_bytes(tmp_path / "checkpoint_4")
  mesh = partitioning.make_mesh()
  with caplog.at_level(logging.WARNING):
    _, info = checkpoints.restore_params(StandInModel(), mesh, str(tmp_path))
  assert info["step"] == 2 and info["path"].endswith("checkpoint_2")
  assert "checkpoint_4" in caplog.text and (tmp_path / "checkpoint_4").is_dir()  # a reader
  with pytest.raises(checkpoints.CheckpointError, match="does not match its checksum"):
    checkpoints.restore_params(StandInModel(), mesh, str(tmp_path / "checkpoint_4"))


# --- Guards on settings that lose work -------------------------------------------------------


def test_nan_skip_stops_after_max_consecutive_skips_and_keeps_the_good_checkpoints(tmp_path):
  poisoned = lambda *a, **k: SyntheticIterator(*a, poison_at=range(3, 100), **k)
  with pytest.raises(
    trainer.NonFiniteLossError,
    match=r"3 consecutive updates skipped "
    r"\(steps 3-5\)",
  ):
    _train(
      tmp_path,
      40,
      model=PoisonedModel(StandInModel()),
      iterator=poisoned,
      nan_policy="skip",
      max_consecutive_skips=2,
    )
  # 4 holds step 2's parameters (its updates were skipped): finite, saved; nothing after.
  assert sorted(p.name for p in tmp_path.glob("checkpoint_*")) == ["checkpoint_2", "checkpoint_4"]
  _assert_same_params(tmp_path / "checkpoint_2", tmp_path / "checkpoint_4")


def test_a_state_with_non_finite_parameters_is_never_saved():
  guard = trainer.NanGuard("skip")
  state = trainer.TrainState(
    step=jnp.int32(3), params={"w": jnp.array([1.0, jnp.nan])}, opt_state=()
  )
  with pytest.raises(trainer.NonFiniteLossError, match="not finite at step 3; not saving"):
    guard.check_state(state, 3)
  guard.check_state(state.replace(params={"w": jnp.ones(2)}), 3)


def test_skipped_updates_appear_in_the_log_line(tmp_path, caplog):
  poisoned = lambda *a, **k: SyntheticIterator(*a, poison_at=(3,), **k)
  with caplog.at_level(logging.INFO):
    _train(tmp_path, 4, model=PoisonedModel(StandInModel()), iterator=poisoned, nan_policy="skip")
  lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
  assert next(l for l in lines if l.startswith("step 4/4")).count("skipped 1") == 1
  assert "skipped 0" in next(l for l in lines if l.startswith("step 2/4"))


# --- Signals everywhere ----------------------------------------------------------------------


def test_sigterm_while_the_data_loads_exits_cleanly_before_the_first_step(tmp_path, caplog):
  _train(tmp_path, 2)

  def signalled_while_loading(*a, **k):
    signal.raise_signal(signal.SIGTERM)
    return SyntheticIterator(*a, **k)

  with caplog.at_level(logging.WARNING):
    out = _train(tmp_path, 6, iterator=signalled_while_loading)
  assert out["preempted"] and out["step"] == 2 and out["history"] == []
  assert sorted(p.name for p in tmp_path.glob("checkpoint_*")) == ["checkpoint_2"]
  assert "before training started" in caplog.text and "Stopped before the first step" in (
    caplog.text
  )


def test_sigterm_during_the_final_evaluation_says_the_checkpoint_is_saved(
  tmp_path, caplog, monkeypatch
):
  def evaluation_killed(*args, **kwargs):
    signal.raise_signal(signal.SIGTERM)
    time.sleep(30)  # interrupted by the handler's exception
    raise AssertionError("the evaluation was not interrupted")

  monkeypatch.setattr(train_lib, "_evaluate", evaluation_killed)
  with caplog.at_level(logging.WARNING):
    out = _train(tmp_path, 4, heldout_cluster="nli")
  assert out["preempted"] and out["eval"] is None and out["step"] == 4
  assert checkpoints.verify(tmp_path / "checkpoint_4")
  assert f"during the final evaluation: {tmp_path}/checkpoint_4 is saved" in caplog.text


def test_ctrl_c_saves_like_sigterm(tmp_path):
  class Interrupted(SyntheticIterator):
    def __next__(self):
      if self.position == 2:
        signal.raise_signal(signal.SIGINT)
      return super().__next__()

  out = _train(tmp_path, 10, iterator=Interrupted)
  assert out["preempted"] and out["step"] == 3
  assert checkpoints.verify(tmp_path / "checkpoint_3")


def test_a_second_ctrl_c_aborts_at_once_and_releases(monkeypatch):
  exits, aborted = [], []
  monkeypatch.setattr(preemption.os, "_exit", exits.append)
  with preemption.PreemptionHandler(grace_seconds=60, on_abort=lambda: aborted.append(1)) as h:
    h.phase = preemption.TRAIN
    signal.raise_signal(signal.SIGINT)
    assert h.requested() and not exits
    signal.raise_signal(signal.SIGINT)
  assert exits == [preemption.ABORT_EXIT_CODE] and aborted == [1]


# --- Nothing executable from data ------------------------------------------------------------

_CANARY = """
import pathlib
def fire():
  pathlib.Path(__file__).with_name("FIRED").write_text("ran")
  return 8
"""


def _trainer_checkpoint_of_the_hf_fixture(model_dir: pathlib.Path):
  from flan.model import hf

  config, params = hf.params_from_hf(HF_FIXTURE)
  state = {"step": np.int32(7), "params": params, "opt_state": jax.tree.map(np.zeros_like, params)}
  saver = checkpoints.Checkpoints(str(model_dir), async_save=False)
  saver.save(7, jax.tree.map(jnp.asarray, state), {"position": 3})
  saver.close()
  return config


def test_a_config_gin_with_a_gin_call_in_a_model_dir_is_never_executed(
  tmp_path, monkeypatch, capsys
):
  model_dir = tmp_path / "model_dir"
  config = _trainer_checkpoint_of_the_hf_fixture(model_dir)
  (tmp_path / "canary.py").write_text(_CANARY)
  monkeypatch.syspath_prepend(str(tmp_path))
  (model_dir / "config.gin").write_text(
    "from __gin__ import dynamic_registration\nimport canary\nfrom flan.model import network\n"
    "network.T5Config.emb_dim = @canary.fire()\n"
  )
  # No recorded config: the converter asks for a model gin instead of reading config.gin.
  assert "pass --gin_file" in _convert_error(
    capsys, "flan_to_hf", "--checkpoint", str(model_dir), "--out", str(tmp_path / "a")
  )
  # With the record training writes (plain JSON), the export uses it.
  run_record.write(
    model_dir,
    model_config=config,
    vocabulary={"path": "byte", "sha256": None},
    feature_lengths=LENGTHS,
    config_gin="# the run's config\n",
  )
  (model_dir / "config.gin").write_text(
    "from __gin__ import dynamic_registration\nimport canary\nfrom flan.model import network\n"
    "network.T5Config.emb_dim = @canary.fire()\n"
  )
  convert.main(["flan_to_hf", "--checkpoint", str(model_dir), "--out", str(tmp_path / "b")])
  assert json.loads((tmp_path / "b" / "config.json").read_text())["d_model"] == config.emb_dim
  # Evaluation reads the same directory without parsing it either.
  from flan.model import encoder_decoder

  checkpoints.restore_params(
    encoder_decoder.EncoderDecoderModel(config), partitioning.make_mesh(), str(model_dir)
  )
  assert not (tmp_path / "FIRED").exists()


def test_a_refused_run_leaves_the_previous_config_and_record(tmp_path):
  _train(tmp_path, 2)
  before = _snapshot(tmp_path, ["config.gin", run_record.RECORD_NAME])
  assert json.loads(before[run_record.RECORD_NAME])["model"]["mlp_dim"] == 64
  from tiny_training import StandInConfig

  with pytest.raises(checkpoints.CheckpointError, match="another model size"):
    _train(tmp_path, 4, model=StandInModel(StandInConfig(mlp_dim=96)))
  assert _snapshot(tmp_path, ["config.gin", run_record.RECORD_NAME]) == before


def test_evaluation_with_another_vocabulary_than_the_checkpoints_is_refused(tmp_path, capsys):
  _train(tmp_path, 2)  # the byte vocabulary, recorded
  spm = {"path": "/somewhere/spiece.model", "sha256": "0" * 64}
  with pytest.raises(ValueError) as e:
    run_record.check_vocabulary(tmp_path, spm)
  line = _one_error_line(capsys, e.value)
  assert "VOCABULARY='/somewhere/spiece.model' is not the vocabulary" in line
  assert "--gin.VOCABULARY=\"'byte'\"" in line
  run_record.check_vocabulary(tmp_path, {"path": "byte", "sha256": None})  # the same: fine


def test_flan_evaluate_refuses_a_vocabulary_other_than_the_recorded_one(tmp_path, monkeypatch):
  from flan.data import vocabularies

  _train(tmp_path / "run", 2)  # the byte vocabulary, recorded in model_config.json
  other = tmp_path / "spiece.model"
  other.write_bytes(b"another vocabulary")
  monkeypatch.setattr(
    vocabularies,
    "get_vocabulary",  # sized like the bytes: only the file differs
    lambda path: type("Vocab", (), {"vocab_size": 259})(),
  )
  with pytest.raises(ValueError, match=f"VOCABULARY='{other}' is not the vocabulary"):
    eval_lib.evaluate(
      model=StandInModel(),
      checkpoint_path=str(tmp_path / "run"),
      heldout_cluster="nli",
      task_feature_lengths=LENGTHS,
      vocabulary=str(other),
      batch_size=8,
      use_mock_data=True,
    )
  assert not (tmp_path / "run" / "eval").exists()  # refused before evaluating anything


# --- Converters do not replace a model -------------------------------------------------------


def test_converter_out_refuses_an_existing_model_unless_overwrite(tmp_path, capsys):
  out = tmp_path / "ours"
  convert.main(["hf_to_flan", "--hf_dir", str(HF_FIXTURE), "--out", str(out)])
  before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
  line = _convert_error(capsys, "hf_to_flan", "--hf_dir", str(HF_FIXTURE), "--out", str(out))
  assert "already exists and is not empty" in line and "--overwrite" in line
  assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
  back = tmp_path / "back"
  back.mkdir()
  (back / "config.json").write_text("{}")
  assert "already exists" in _convert_error(
    capsys, "flan_to_hf", "--checkpoint", str(out), "--out", str(back)
  )
  assert (back / "config.json").read_text() == "{}"
  convert.main(["flan_to_hf", "--checkpoint", str(out), "--out", str(back), "--overwrite"])
  assert json.loads((back / "config.json").read_text())["model_type"] == "t5"


def test_hf_directory_of_another_architecture_or_truncated_weights_is_one_error(tmp_path, capsys):
  from flan.model import hf

  bert = tmp_path / "bert"
  shutil.copytree(HF_FIXTURE, bert)
  cfg = json.loads((bert / "config.json").read_text())
  cfg = {k: v for k, v in cfg.items() if k != "num_heads"}
  cfg.update(model_type="bert", architectures=["BertModel"])
  (bert / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(ValueError) as e:
    hf.params_from_hf(bert)
  line = _one_error_line(capsys, e.value)
  assert (
    "is not a T5 config (model_type 'bert', architectures ['BertModel'], missing num_heads)"
  ) in line
  truncated = tmp_path / "truncated"
  shutil.copytree(HF_FIXTURE, truncated)
  weights = truncated / "model.safetensors"
  weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
  with pytest.raises(ValueError) as e:
    hf.params_from_hf(truncated)
  line = _one_error_line(capsys, e.value)
  assert f"{weights} is not a readable safetensors file" in line and "truncated" in line


# --- The same, through the command line ------------------------------------------------------

# `python -m flan.train`, paused after step 3 until the file named by argv[1] exists (a hold
# that keeps the first trainer inside its run while the second one starts).
_PAUSING_DRIVER = """
import os, sys, time
from flan.training import progress
hold, original = sys.argv[1], progress.Progress.update
def update(self, step, metrics):
  original(self, step, metrics)
  if hold != "none" and step == 3:
    print("PAUSED", os.getpid(), flush=True)
    while not os.path.exists(hold):
      time.sleep(0.2)
progress.Progress.update = update
from flan import train
sys.exit(train.main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_two_trainer_processes_on_one_model_dir(tmp_path):
  import sys

  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  flags = lambda d: [
    "--gin_file=configs/smoke.gin",
    f"--gin.MODEL_DIR={d}",
    "--gin.MIXTURE_OR_TASK_NAME='flan_rte_train'",
    "--gin.TRAIN_STEPS=6",
    "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 8}",
    "--gin.CHECKPOINT_PERIOD=2",
    "--gin.LOG_EVERY=1",
  ]
  run = lambda hold, d, **kw: subprocess.Popen(
    [sys.executable, "-c", _PAUSING_DRIVER, hold, *flags(d)], cwd=ROOT, env=env, text=True, **kw
  )
  go = tmp_path / "go"
  first = run(str(go), tmp_path / "shared", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
  try:
    line = first.stdout.readline()
    assert line.startswith("PAUSED"), line
    second = run("none", tmp_path / "shared", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = second.communicate(timeout=300)
    go.touch()
    assert first.wait(timeout=300) == 0
  finally:
    go.touch()
    if first.poll() is None:
      first.kill()
  assert second.returncode == 1 and "Traceback" not in err
  errors = [l for l in err.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1 and f"in use by another trainer: pid {first.pid} on host" in errors[0]
  alone = run("none", tmp_path / "alone", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  assert alone.wait(timeout=300) == 0
  _assert_same_params(tmp_path / "alone" / "checkpoint_6", tmp_path / "shared" / "checkpoint_6")
