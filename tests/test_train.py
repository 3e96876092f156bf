"""`flan.train`: exact resume, NaN stop/skip, SIGTERM, HF initial weights, FLOPs; a real-data run.

The loop tests use the one-block stand-in model (fast to compile): they test the loop, not
the network. The real-data test trains the real tiny T5. The bad-input table is in
test_errors.py; SIGKILL-and-resume in test_resilience.py.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

import gin
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from tiny_training import (
  PoisonedModel,
  StandInModel,
  SyntheticIterator,
  synthetic_run,
  tiny_model,
)
from tiny_training import train as run_train

from flan import train as train_lib
from flan.training import flops
from flan.training import train_step as trainer

ROOT = pathlib.Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("clean_gin")


def _train(model_dir, steps, **kw):
  return synthetic_run(model_dir, steps, **{"checkpoint_period": 3, **kw})


def _params(step_dir):
  return ocp.StandardCheckpointer().restore(pathlib.Path(step_dir).absolute() / "state")["params"]


def test_a_run_resumed_after_3_steps_ends_equal_to_an_uninterrupted_run(tmp_path):
  whole = _train(tmp_path / "whole", 6)
  first = _train(tmp_path / "split", 3)
  second = _train(tmp_path / "split", 6)
  assert whole["step"] == first["step"] * 2 == second["step"] == 6
  assert "scratch" in first["source"] and "checkpoint_3" in second["source"]
  # checkpoint_3 of the whole run was saved asynchronously while training went on with the
  # (donated) state: it must equal the split run's, which stopped there.
  for step in (3, 6):
    a = _params(tmp_path / "whole" / f"checkpoint_{step}")
    b = _params(tmp_path / "split" / f"checkpoint_{step}")
    for x, y in zip(sorted(_flat(a)), sorted(_flat(b))):
      assert x[0] == y[0]
      np.testing.assert_array_equal(x[1], y[1], err_msg=f"{x[0]} at step {step}")
  assert (tmp_path / "whole" / "config.gin").is_file()
  assert list((tmp_path / "whole" / "train").glob("events.out.tfevents.*"))


def _flat(tree, prefix=""):
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _flat(v, f"{prefix}/{k}")
  else:
    yield prefix, np.asarray(tree)


def test_nan_stop_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
  poisoned = lambda *a, **k: SyntheticIterator(*a, poison_at=(5,), **k)
  with pytest.raises(trainer.NonFiniteLossError, match="at step 5"):
    _train(tmp_path, 8, model=PoisonedModel(StandInModel()), iterator=poisoned, checkpoint_period=2)
  saved = sorted(p.name for p in tmp_path.glob("checkpoint_*"))
  assert saved == ["checkpoint_2", "checkpoint_4"]


def test_nan_skip_policy_finishes_the_run_and_counts_the_skipped_update(tmp_path):
  poisoned = lambda *a, **k: SyntheticIterator(*a, poison_at=(5,), **k)
  out = _train(
    tmp_path, 8, model=PoisonedModel(StandInModel()), iterator=poisoned, nan_policy="skip"
  )
  assert out["step"] == 8
  # Reports at steps 2, 4, 6, 8; step 5 falls in the one at 6.
  assert [h["skipped_updates"] for h in out["history"]] == [0, 0, 1, 0]
  params = _params(tmp_path / "checkpoint_8")
  assert all(np.isfinite(x).all() for _, x in _flat(params))


def test_an_unset_required_macro_names_the_flag_to_add(capsys, monkeypatch):
  monkeypatch.chdir(ROOT)
  code = train_lib.main(
    ["--gin_file=configs/models/tiny.gin", "--gin_file=configs/runs/finetune.gin"]
  )
  err = capsys.readouterr().err
  assert code == 1 and "Traceback" not in err
  assert "are required but not set; add --gin.MIXTURE_OR_TASK_NAME=..." in err


def test_bare_string_values_are_quoted_and_files_are_required(capsys, monkeypatch):
  from flan import cli as gin_config

  assert gin_config._quote_bare_string("MODEL_DIR = /tmp/x") == "MODEL_DIR = '/tmp/x'"
  assert gin_config._quote_bare_string("TRAIN_STEPS = 10") == "TRAIN_STEPS = 10"
  assert gin_config._quote_bare_string("MODEL = @model.X()") == "MODEL = @model.X()"
  assert gin_config.rewrite_args(["--gin.A=1", "--x"]) == ["--gin_bindings=A = 1", "--x"]
  assert train_lib.main([]) == 1
  assert "No --gin_file" in capsys.readouterr().err


def test_flops_count_encoder_and_decoder_tokens_separately():
  cfg = tiny_model().config
  base = flops.forward_flops(cfg, batch_size=2, input_length=16, target_length=8)
  e, hd, v = cfg.emb_dim, cfg.num_heads * cfg.head_dim, cfg.vocab_size
  f = cfg.mlp_dim
  per_enc_token = (
    2 * cfg.num_encoder_layers * (4 * e * hd + 3 * e * f) + 2 * cfg.num_decoder_layers * 2 * e * hd
  )
  longer = flops.forward_flops(cfg, batch_size=2, input_length=17, target_length=8)
  attention = (
    4 * hd * 2 * (cfg.num_encoder_layers * (17**2 - 16**2) + cfg.num_decoder_layers * 8 * (17 - 16))
  )
  assert longer - base == pytest.approx(2 * per_enc_token + attention)
  assert flops.train_step_flops(cfg, batch_size=2, input_length=16, target_length=8) == 3 * base
  per_dec_token = 2 * cfg.num_decoder_layers * (6 * e * hd + 3 * e * f) + 2 * e * v
  more_targets = flops.forward_flops(cfg, batch_size=2, input_length=16, target_length=9)
  attention = 4 * hd * 2 * cfg.num_decoder_layers * ((81 - 64) + 16)
  assert more_targets - base == pytest.approx(2 * per_dec_token + attention)


_PREEMPTIBLE = """
import sys
from tiny_training import LENGTHS, StandInModel, SyntheticIterator, train
out = train(model=StandInModel(), mixture_or_task_name="synthetic",
            task_feature_lengths=LENGTHS, train_steps=10**6, model_dir=sys.argv[1],
            batch_size=8, checkpoint_period=10**6, log_every=10**6,
            make_iterator=SyntheticIterator, preemption_grace_seconds=60)
print("PREEMPTED", out["preempted"], out["step"], flush=True)
"""


@pytest.mark.slow
def test_sigterm_saves_the_step_reached_and_exits_0(tmp_path):
  env = dict(
    os.environ,
    PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
    XLA_FLAGS="--xla_force_host_platform_device_count=2",
    JAX_PLATFORMS="cpu",
  )
  proc = subprocess.Popen(
    [sys.executable, "-c", _PREEMPTIBLE, str(tmp_path)],
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )
  try:
    deadline = time.time() + 300
    while not (tmp_path / "operative_config.gin").exists():  # written after the first step
      assert proc.poll() is None, proc.stdout.read()
      assert time.time() < deadline, "training never started"
      time.sleep(0.5)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0, out[-3000:]
  line = [l for l in out.splitlines() if l.startswith("PREEMPTED")][-1]
  _, flag, step = line.split()
  assert flag == "True" and int(step) >= 1
  assert (tmp_path / f"checkpoint_{step}" / "state").is_dir()


@pytest.mark.slow
@pytest.mark.realdata
def test_tiny_model_learns_a_real_holdout_mixture(tmp_path, data_dir):
  # ../shared holds 43 of the 62 datasets: train on the NLI cluster, all of which is there.
  out = run_train(
    model=tiny_model(dropout_rate=0.0),
    mixture_or_task_name="flan_holdout_coreference_train",
    task_feature_lengths={"inputs": 128, "targets": 32},
    train_steps=200,
    model_dir=str(tmp_path),
    batch_size=16,
    data_dir=data_dir,
    random_seed=0,
    checkpoint_period=1000,
    log_every=50,
    run_heldout_eval=False,
    train_clusters=["nli"],
  )
  final = out["history"][-1]["loss"]
  assert out["step"] == 200
  assert final < 0.7 * out["first_loss"], (out["first_loss"], final)


@pytest.mark.parametrize(
  "path", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs" / "experiments").glob("*.gin"))
)
def test_each_experiment_gin_parses_and_holds_out_its_cluster(path, monkeypatch):
  from flan import cli as gin_config
  from flan.data import clusters

  monkeypatch.chdir(ROOT)
  cluster = pathlib.Path(path).stem.removeprefix("holdout_")
  assert cluster in clusters.CLUSTERS
  gin_config.parse_gin_flags(
    [f"--gin_file={path}", "--gin.MODEL_DIR=/tmp/x", "--gin.VOCABULARY=None"]
  )
  assert gin.query_parameter("%MIXTURE_OR_TASK_NAME") == f"flan_holdout_{cluster}_train"
  assert gin.query_parameter("%HELDOUT_CLUSTER") == cluster
  assert gin.query_parameter("%DROPOUT_RATE") == 0.1  # set once: by finetune.gin
  assert gin.query_parameter("%TASK_FEATURE_LENGTHS") == {"inputs": 1024, "targets": 256}
  # It opens with its exact command.
  assert (ROOT / path).read_text().startswith(f"# python -m flan.train --gin_file={path} ")


def test_smoke_gin_uses_the_tiny_model_mock_data_and_small_lengths(monkeypatch):
  from flan import cli as gin_config

  monkeypatch.chdir(ROOT)
  gin_config.parse_gin_flags(["--gin_file=configs/smoke.gin"])
  assert gin.query_parameter("%USE_MOCK_DATA") is True
  assert gin.query_parameter("%VOCABULARY") is None
  assert gin.query_parameter("%TASK_FEATURE_LENGTHS") == {"inputs": 256, "targets": 64}
  assert gin.query_parameter("%MIXTURE_OR_TASK_NAME").startswith("flan_holdout_")
  assert gin.query_parameter("network.T5Config.emb_dim") == 8
  assert gin.query_parameter("%MODEL_DIR").startswith("~/")  # per user, never shared


def test_progress_summary_derives_rates_fractions_and_mfu():
  from flan.training import progress

  sums = {
    "loss": 40.0,
    "cross_ent_sum": 36.0,
    "num_tokens": 18.0,
    "accuracy": 9.0,
    "num_encoder_tokens": 60.0,
    "num_decoder_tokens": 20.0,
    "num_loss_weights": 18.0,
    "encoder_slots": 64.0,
    "decoder_slots": 32.0,
    "num_sequences": 8.0,
    "grad_norm": 4.0,
    "skipped_updates": 1.0,
  }
  s = progress.summarize(sums, steps=2, seconds=4.0, flops_per_step=8e12, peak_flops=1e12)
  assert s["loss"] == 20.0 and s["loss_per_target_token"] == 2.0 and s["accuracy"] == 0.5
  assert s["timing/tokens_per_second"] == 20.0 and s["timing/steps_per_second"] == 0.5
  assert s["non_padding_fraction/overall"] == pytest.approx(80 / 96)
  assert s["non_padding_fraction/loss_weights"] == pytest.approx(18 / 32)
  n = jax.device_count()
  assert s["mfu"] == pytest.approx(8e12 * 2 / 4.0 / n / 1e12)


class _SmallVocabIterator(SyntheticIterator):
  """SyntheticIterator with token ids folded into a small vocabulary (PAD/EOS kept)."""

  vocab_size = 96

  def __next__(self):
    batch = super().__next__()
    return {
      k: (np.where(v > 1, v % (self.vocab_size - 2) + 2, v) if k != "decoder_loss_weights" else v)
      for k, v in batch.items()
    }


def test_initial_checkpoint_path_of_a_hugging_face_directory_starts_from_its_weights(
  tmp_path, monkeypatch
):
  from flan.data import vocabularies
  from flan.model import encoder_decoder as model_lib
  from flan.model import hf

  fixture = ROOT / "tests" / "testdata" / "hf_tiny_t5"
  config, expected = hf.params_from_hf(fixture, dtype="float32")
  # The fixture's 96-id vocabulary is smaller than the byte vocabulary train() checks.
  monkeypatch.setattr(
    vocabularies, "get_vocabulary", lambda path: type("Vocab", (), {"vocab_size": 96})()
  )
  from flan.training import optimizer as optimizer_lib

  frozen = lambda param_axes: optimizer_lib.make_optimizer(
    base_learning_rate=0.0, min_learning_rate=0.0, param_axes=param_axes
  )[0]
  out = _train(
    tmp_path,
    1,
    model=model_lib.EncoderDecoderModel(config),
    make_optimizer=frozen,
    iterator=_SmallVocabIterator,
    initial_checkpoint_path=str(fixture),
    checkpoint_period=1,
  )
  assert out["source"] == f"initialised from Hugging Face weights in {fixture}"
  got = dict(_flat(_params(tmp_path / "checkpoint_1")))
  want = dict(_flat(expected))
  assert sorted(got) == sorted(want)
  for name, value in want.items():
    np.testing.assert_array_equal(got[name], value, err_msg=name)


@pytest.mark.slow
def test_end_of_training_eval_reports_the_initial_checkpoint_beside_the_tuned_model(tmp_path):
  import json

  common = dict(
    model=tiny_model(dropout_rate=0.0),
    mixture_or_task_name="flan_rte_train",
    task_feature_lengths={"inputs": 32, "targets": 8},
    batch_size=8,
    use_mock_data=True,
    mock_num_examples=8,
    log_every=1,
    eval_batch_size=8,
    eval_max_examples=2,
    eval_num_templates=1,
  )
  run_train(
    **common,
    train_steps=1,
    model_dir=str(tmp_path / "pre"),
    checkpoint_period=1,
    run_heldout_eval=False,
  )
  out = run_train(
    **common,
    train_steps=2,
    model_dir=str(tmp_path / "tuned"),
    checkpoint_period=2,
    heldout_cluster="coreference",
    initial_checkpoint_path=str(tmp_path / "pre" / "checkpoint_1"),
  )
  written = json.loads((tmp_path / "tuned" / "eval" / "results.json").read_text())
  assert sorted(out["eval"]["models"]) == sorted(written["models"]) == ["baseline", "tuned"]
  assert written["cluster"] == "coreference" and written["metadata"]["step"] == 2
  assert written["metadata"]["baseline_checkpoint"]["step"] == 1


def test_sigterm_sets_the_flag_and_a_save_past_the_grace_period_ends_the_process(monkeypatch):
  from flan.training import preemption

  exits = []
  monkeypatch.setattr(preemption.os, "_exit", exits.append)
  with preemption.PreemptionHandler(grace_seconds=0.2) as handler:
    handler.phase = preemption.TRAIN
    assert not handler.requested()
    signal.raise_signal(signal.SIGTERM)
    assert handler.requested()
    time.sleep(0.6)  # the "save" outlives the grace period
  assert exits == [1]
  assert signal.getsignal(signal.SIGTERM) != handler._on_signal  # the old handler is back
