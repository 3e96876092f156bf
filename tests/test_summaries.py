"""What a run shows: TensorBoard summaries (t5x's names, evaluation, gin text, hparams) and a
stderr made of the project's own log lines, one for every long phase.

The unit tests check the pieces; the slow test runs `python -m flan.train` as a user does
(the smoke gin on a one-task mixture, EVAL_PERIOD on, a baseline checkpoint) and reads its
event files back with TensorBoard's own EventAccumulator.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from flan import logs
from flan.training import progress, summaries, train_step

ROOT = pathlib.Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("clean_gin")


def _template(i, score, counted=True, validation=None, **metrics):
  return {
    "template": i,
    "counted": counted,
    "kind": "rank_classification",
    "test": {"score": score, "metrics": {"accuracy": score, **metrics}},
    "validation": None if validation is None else {"score": validation},
  }


def test_eval_scalars_give_each_dataset_and_the_cluster_average_under_shared_tags():
  model = {
    "datasets": {
      "wsc": {
        "status": "ok",
        "mean": 50.0,
        "dev_selected": 60.0,
        "templates": [
          _template(0, 40.0, validation=10.0, f1=1.0),
          _template(1, 60.0, validation=20.0, f1=3.0),
          _template(2, 99.0, counted=False),
        ],
      },
      "winogrande": {
        "status": "ok",
        "mean": 30.0,
        "dev_selected": None,
        "templates": [_template(0, 30.0)],
      },
      "dpr": {"status": "missing", "error": "not prepared"},
    },
    "cluster": {"mean_over_templates": 40.0, "dev_selected": 45.0},
  }
  got = summaries.eval_scalars(model)
  assert got == {
    "eval/wsc/mean_over_templates": 50.0,
    "eval/wsc/dev_selected": 60.0,
    "eval/wsc/accuracy": 50.0,
    "eval/wsc/f1": 2.0,  # the turned-around template is left out
    "eval/winogrande/mean_over_templates": 30.0,
    "eval/winogrande/accuracy": 30.0,
    "eval/cluster_average/mean_over_templates": 40.0,
    "eval/cluster_average/dev_selected": 45.0,
  }


def test_hparams_are_flat_scalars_with_model_and_optimizer_prefixes():
  from flan.model import network

  config = network.T5Config(
    vocab_size=32128,
    emb_dim=8,
    num_heads=4,
    head_dim=3,
    mlp_dim=16,
    num_encoder_layers=2,
    num_decoder_layers=2,
  )
  got = summaries.hparams(
    {
      "batch_size": 8,
      "task_feature_lengths": {"inputs": 32},
      "initial_checkpoint_path": None,
      "mesh": [1, 2],
    },
    config,
    {"base_learning_rate": 1e-3},
  )
  assert got["batch_size"] == 8 and got["task_feature_lengths/inputs"] == 32
  assert got["initial_checkpoint_path"] == "None" and got["mesh"] == "[1, 2]"
  assert got["model/emb_dim"] == 8 and got["model/mlp_activations"] == "('gelu', 'linear')"
  assert got["optimizer/base_learning_rate"] == 1e-3


def test_train_stats_carry_t5x_metric_names_with_t5x_meanings():
  # Two steps of 2 rows x 4 target slots; the model loss is a token sum (no normaliser).
  sums = {
    "loss": 30.0,
    "z_loss": 2.0,
    "cross_ent_loss": 28.0,
    "num_tokens": 10.0,
    "accuracy": 5.0,
    "num_loss_weights": 10.0,
    "num_encoder_tokens": 20.0,
    "num_decoder_tokens": 10.0,
    "encoder_slots": 32.0,
    "decoder_slots": 16.0,
    "num_sequences": 4.0,
    "num_encoder_segments": 6.0,
    "num_decoder_segments": 6.0,
    "learning_rate": 0.3,
  }
  s = progress.summarize(sums, steps=2, seconds=4.0, flops_per_step=None, peak_flops=None)
  assert s["loss"] == 15.0 and s["cross_ent_loss"] == 14.0 and s["z_loss"] == 1.0
  assert s["loss_per_nonpadding_target_token"] == 3.0
  assert s["loss_per_all_target_tokens"] == 30.0 / 16
  assert s["cross_ent_loss_per_all_target_tokens"] == 28.0 / 16
  assert s["z_loss_per_all_target_tokens"] == 2.0 / 16
  assert s["loss_per_target_token"] == 2.8  # the progress line's number
  assert progress.per_token_loss(sums) == 2.8
  assert s["timing/seconds"] == 4.0 and s["timing/seqs"] == 4.0
  assert s["timing/target_tokens_per_second"] == 4.0  # slots, padding included, as t5x
  assert s["effective_batch_size/encoder"] == s["effective_batch_size/decoder"] == 3.0
  assert s["learning_rate"] == 0.15  # t5x: the window's mean (learning_rate/current: last)


def test_packed_examples_are_counted_as_t5x_counts_them():
  # t5x's count_packed_examples docstring example: 5 packed examples.
  segment_ids = jnp.array([[1, 1, 3, 3, 0, 0], [2, 2, 2, 2, 2, 2], [2, 7, 7, 7, 7, 0]])
  assert float(train_step._count_segments(segment_ids)) == 5.0


def test_summaries_are_written_only_where_enabled(tmp_path):
  off = summaries.Summaries(str(tmp_path / "off"), enabled=False)
  off.scalars("train", 1, {"loss": 1.0})
  off.close()
  assert not (tmp_path / "off").exists()
  assert summaries.Summaries(None).writer("train") is None


_QUIET_IMPORT = "from flan import logs; logs.setup(); import tensorflow as tf; tf.constant(1)"


def test_tensorflow_start_up_lines_are_held_back_unless_asked_for():
  env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", logs.VERBOSE_ENV)}
  env["PYTHONPATH"] = str(ROOT)
  quiet = subprocess.run(
    [sys.executable, "-c", _QUIET_IMPORT],
    env=env,
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_verbose_libraries_keep_absl_and_tensorflow_warnings(monkeypatch):
  import logging

  monkeypatch.setenv(logs.VERBOSE_ENV, "1")
  logs.setup()
  assert logging.getLogger("absl").getEffectiveLevel() == logging.WARNING
  logs.setup(verbose_libraries=False)
  assert logging.getLogger("absl").getEffectiveLevel() == logging.ERROR
  assert logging.getLogger("tensorflow").getEffectiveLevel() == logging.ERROR


# ----------------------------------------------------------------------------- end to end

_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) \S")
# One line for each phase that can take seconds, in the order they happen.
_PHASES = [
  r"Reading the gin config",
  r"Registering the FLAN tasks",
  r"Read flan_rte_train \(1/1\): \d+ train examples in",
  r"Restoring the initial checkpoint .*checkpoint_1",
  r"Compiling the train step",
  r"Compiled the train step in",
  r"Loaded wsc for evaluation: 2 test and 2 dev examples",
  r"Saving checkpoint .*checkpoint_2",
  r"Evaluating the held-out cluster's subset at step 2",
  r"Evaluation at step 2 .*tuned [\d.]+  baseline [\d.]+",
  r"Checkpoints written to .*tuned",
  r"Evaluating held-out cluster 'coreference' at step 4",
  r"Evaluation results written to .*eval",
]


def _tensorboard(run_dir):
  from tensorboard.backend.event_processing import event_accumulator as ea
  from tensorboard.util import tensor_util

  acc = ea.EventAccumulator(str(run_dir), size_guidance={ea.TENSORS: 0})
  acc.Reload()
  values = {}
  for tag in acc.Tags()["tensors"]:
    arrays = [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
    values[tag] = [(step, a.item() if a.size == 1 else a) for step, a in arrays]
  return acc, values


def _baseline_checkpoint(model_dir):
  """A checkpoint of the smoke gin's tiny T5 after one step on synthetic batches."""
  import tiny_training
  from tiny_training import LENGTHS, SyntheticIterator

  from flan.model import encoder_decoder, network

  config = network.T5Config(
    vocab_size=32128,
    emb_dim=8,
    num_heads=4,
    head_dim=3,
    mlp_dim=16,
    num_encoder_layers=2,
    num_decoder_layers=2,
    dtype="float32",
  )
  tiny_training.train(
    model=encoder_decoder.EncoderDecoderModel(config),
    mixture_or_task_name="synthetic",
    task_feature_lengths=LENGTHS,
    train_steps=1,
    model_dir=str(model_dir),
    batch_size=8,
    checkpoint_period=1,
    make_iterator=SyntheticIterator,
  )
  return model_dir / "checkpoint_1"


@pytest.mark.slow
def test_smoke_run_logs_every_phase_in_our_format_and_tensorboard_holds_its_evaluation(tmp_path):
  baseline = _baseline_checkpoint(tmp_path / "pre")
  run = tmp_path / "tuned"
  env = {
    k: v
    for k, v in os.environ.items()
    if k not in ("TF_CPP_MIN_LOG_LEVEL", "XLA_FLAGS", logs.VERBOSE_ENV)
  }
  env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "flan.train",
      "--gin_file=configs/smoke.gin",
      f"--gin.MODEL_DIR='{run}'",
      "--gin.MIXTURE_OR_TASK_NAME='flan_rte_train'",
      "--gin.HELDOUT_CLUSTER='coreference'",
      f"--gin.INITIAL_CHECKPOINT_PATH='{baseline}'",
      "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 16}",
      "--gin.TRAIN_STEPS=4",
      "--gin.LOG_EVERY=2",
      "--gin.CHECKPOINT_PERIOD=2",
      "--gin.EVAL_PERIOD=2",
      "--gin.EVALUATOR_NUM_EXAMPLES=2",
      "--gin.EVAL_MAX_EXAMPLES=3",
    ],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]

  # stderr: only our log lines, and a line for every phase, in order.
  lines = proc.stderr.splitlines()
  assert lines and [l for l in lines if not _LOG_LINE.match(l)] == []
  at = 0
  for phase in _PHASES:
    found = [i for i, l in enumerate(lines) if i >= at and re.search(phase, l)]
    assert found, f"no line for {phase!r} after line {at}:\n" + "\n".join(lines)
    at = found[0]

  # TensorBoard: periodic (subset) and final evaluations of both models, same tags.
  datasets = ("definite_pronoun_resolution", "winogrande", "wsc")
  tags = [f"eval/{d}/mean_over_templates" for d in datasets] + [
    "eval/cluster_average/mean_over_templates"
  ]
  results = json.loads((run / "eval" / "results.json").read_text())
  for model in ("tuned", "baseline"):
    _, periodic = _tensorboard(run / "inference_eval" / model)
    _, final = _tensorboard(run / "eval" / model)
    for tag in tags:
      assert [s for s, _ in periodic[tag]] == [2, 4], (model, tag)
      assert [s for s, _ in final[tag]] == [4], (model, tag)
    want = results["models"][model]["cluster"]["mean_over_templates"]
    assert final["eval/cluster_average/mean_over_templates"][0][1] == pytest.approx(want)
    assert final["eval/wsc/mean_over_templates"][0][1] == pytest.approx(
      results["models"][model]["datasets"]["wsc"]["mean"]
    )
  _, baseline_periodic = _tensorboard(run / "inference_eval" / "baseline")
  first, second = baseline_periodic["eval/cluster_average/mean_over_templates"]
  assert first[1] == second[1]  # the baseline is evaluated once and does not change

  # Train: t5x's names beside ours, the gin config as text, hparams.
  acc, train = _tensorboard(run / "train")
  for tag in (
    "loss",
    "cross_ent_loss",
    "cross_ent_loss_per_all_target_tokens",
    "loss_per_all_target_tokens",
    "loss_per_nonpadding_target_token",
    "timing/seconds",
    "timing/steps_per_second",
    "effective_batch_size/decoder",
    "timing/compilation_seconds",
    "timing/train_iter_warmup",
    "timing/init_or_restore_seconds",
    "timing/dataset_loading_seconds",
    "timing/evaluate_seconds",
    "loss_per_target_token",
  ):
    assert tag in train, tag
  # The run continues from the baseline's step 1; its first step (2) compiles: untimed.
  assert [s for s, _ in train["loss"]] == [4]
  config = train["config"][0][1].decode()
  assert "EVAL_PERIOD = 2" in config and "EVALUATOR_NUM_EXAMPLES = 2" in config
  assert "eval_period = %EVAL_PERIOD" in train["operative_config"][0][1].decode()
  from tensorboard.plugins.hparams import plugin_data_pb2

  content = acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
  hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
  assert hparams["batch_size"].number_value == 8 and hparams["eval_period"].number_value == 2
  assert hparams["model/emb_dim"].number_value == 8
  assert hparams["heldout_cluster"].string_value == "coreference"
  np.testing.assert_allclose(hparams["optimizer/base_learning_rate"].number_value, 1e-2)


@pytest.mark.slow
def test_periodic_evaluation_compiles_once_and_evaluates_the_baseline_once():
  import jax
  import tensorflow_datasets as tfds
  from tiny_training import tiny_model

  from flan.data import vocabularies
  from flan.evaluation import periodic
  from flan.model import partitioning

  model = tiny_model(dropout_rate=0.0)
  mesh = partitioning.make_mesh({"data": -1, "model": 1})
  shapes = {
    "encoder_input_tokens": (8, 32),
    "decoder_input_tokens": (8, 8),
    "decoder_target_tokens": (8, 8),
    "decoder_loss_weights": (8, 8),
  }
  params = model.init(jax.random.PRNGKey(0), shapes)
  loads = []

  def load_baseline():
    loads.append(1)
    return params

  with tfds.testing.mock_data(num_examples=8, max_value=3):
    evaluator = periodic.PeriodicEvaluator(
      model,
      mesh,
      cluster="coreference",
      vocabulary=vocabularies.get_vocabulary(None),
      data_dir=None,
      feature_lengths={"inputs": 32, "targets": 8},
      batch_size=8,
      max_examples=2,
      num_templates=1,
      load_baseline=load_baseline,
    )
    runner = evaluator.runner
    first = evaluator.evaluate(params, step=1)
    compiled = runner._score_shared._cache_size()  # coreference: rank classification only
    second = evaluator.evaluate(params, step=2)
  assert evaluator.runner is runner
  assert compiled > 0 and runner._score_shared._cache_size() == compiled
  assert loads == [1] and sorted(second) == ["baseline", "tuned"]
  assert all(len(d["templates"][0].splits["test"]) == 2 for d in evaluator.data.values())
  for label in ("tuned", "baseline"):  # same parameters, same fixed subset: same scores
    assert second[label]["cluster"] == first[label]["cluster"] == first["tuned"]["cluster"]
