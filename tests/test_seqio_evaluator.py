"""seqio's Evaluator scores FLAN's held-out eval mixtures, and its numbers are flan.evaluation's.

The tiny T5's predictions and scores are plugged into `seqio.evaluation.Evaluator` (as t5x's
infer-eval does) on `flan_holdout_<cluster>_eval` over the shared samples; every member with
data gets finite metrics, equal to what `flan.evaluation.holdout` reports for the same
model, template by template and split by split: one route from the examples to the numbers.
"""

import math

import jax
import numpy as np
import pytest
import seqio

from flan.data import clusters, mixtures, task_metrics, tasks, vocabularies
from flan.evaluation import holdout, inference
from flan.model import encoder_decoder as model_lib
from flan.model import network, partitioning

LENGTHS = {"inputs": 128, "targets": 16}
pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.fixture(scope="module")
def setup(data_dir, vocab_path):
  vocabulary = vocabularies.get_vocabulary(vocab_path)
  tasks.register(data_dir=data_dir, vocabulary=vocabulary, missing_datasets="skip")
  model = model_lib.EncoderDecoderModel(
    network.T5Config(
      vocab_size=32128,
      emb_dim=8,
      num_heads=2,
      head_dim=4,
      mlp_dim=16,
      num_encoder_layers=1,
      num_decoder_layers=1,
      dropout_rate=0.0,
      dtype="float32",
    )
  )
  keys = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")
  shapes = dict.fromkeys((*keys, "decoder_loss_weights"), (8, 8))
  params = jax.jit(lambda rng: model.init(rng, shapes))(jax.random.PRNGKey(3))
  mesh = partitioning.make_mesh({"data": 1, "model": 1}, devices=jax.devices()[:1])
  runner = inference.ModelRunner(model, mesh, 8)
  yield {
    "data_dir": data_dir,
    "vocabulary": vocabulary,
    "model": model,
    "mesh": mesh,
    "runner": runner,
    "params": runner.place(params),
  }
  tasks.register()


def _unpadded(row: np.ndarray) -> list[int]:
  row = row.tolist()
  while row and row[-1] == 0:
    row.pop()
  return row


def _model_fns(runner, params, decode_length):
  """t5x-style predict_fn / score_fn over the Evaluator's enumerated model datasets."""

  def predict_fn(ds):
    rows = list(ds.as_numpy_iterator())
    inputs = [_unpadded(f["encoder_input_tokens"]) for _, f in rows]
    tokens = runner.predict(params, inputs, LENGTHS["inputs"], decode_length)
    padded = [t + [0] * (decode_length - len(t)) for t in tokens]
    return [(int(i), p) for (i, _), p in zip(rows, padded)]

  def score_fn(ds):
    rows = list(ds.as_numpy_iterator())
    inputs = [_unpadded(f["encoder_input_tokens"]) for _, f in rows]
    targets = [_unpadded(f["decoder_target_tokens"]) for _, f in rows]
    scores = runner.score(params, inputs, targets, (LENGTHS["inputs"], LENGTHS["targets"]))
    return [(int(i), float(s)) for (i, _), s in zip(rows, scores)]

  return predict_fn, score_fn


def _seqio_metrics(setup, cluster, split, num_examples):
  evaluator = seqio.evaluation.Evaluator(
    mixtures.holdout_eval(cluster),
    seqio.EncDecFeatureConverter(pack=False),
    eval_split=split,
    sequence_length=LENGTHS,
    num_examples=num_examples,
    use_memory_cache=True,
  )
  predict_fn, score_fn = _model_fns(setup["runner"], setup["params"], LENGTHS["targets"])
  future, _ = evaluator.evaluate(compute_metrics=True, predict_fn=predict_fn, score_fn=score_fn)
  return {
    task: {k: float(getattr(v, "value", v)) for k, v in metrics.items()}
    for task, metrics in future.result().items()
  }


def _ours(setup, cluster, max_examples):
  return holdout.evaluate_cluster(
    setup["model"],
    setup["params"],
    setup["mesh"],
    cluster=cluster,
    vocabulary=setup["vocabulary"],
    data_dir=setup["data_dir"],
    feature_lengths=LENGTHS,
    output_dir=None,
    batch_size=8,
    max_examples=max_examples,
    runner=setup["runner"],
  )["models"]["tuned"]["datasets"]


@pytest.mark.parametrize(
  "cluster, num_examples",
  [
    ("coreference", None),  # wsc: every example, rank classification on both splits
    ("summarization", 3),  # generation and turned-around templates, first 3 examples
  ],
)
def test_seqio_evaluator_on_a_holdout_eval_mixture_equals_flan_evaluation(
  setup, cluster, num_examples
):
  ours = _ours(setup, cluster, num_examples)
  members = [d for d in clusters.members(cluster) if mixtures.prepared(d, setup["data_dir"])]
  assert members and all(ours[d]["status"] == "ok" for d in members)
  for split in ("test", "validation"):
    theirs = _seqio_metrics(setup, cluster, split, num_examples)
    compared = 0
    for d in members:
      for i, template in enumerate(ours[d]["templates"]):
        name = tasks.evaluated_task_name(d, i)
        if template[split] is None:  # no dev tail: seqio skips the task on `validation`
          assert name not in theirs and split == "validation"
          continue
        assert name in theirs, (name, split, sorted(theirs))
        assert all(math.isfinite(v) for v in theirs[name].values())
        assert theirs[name] == pytest.approx(template[split]["metrics"], rel=1e-6, abs=1e-6)
        compared += 1
    assert compared > 0 or split == "validation"
  kinds = {t["kind"] for d in members for t in ours[d]["templates"]}
  if cluster == "summarization":
    assert {task_metrics.GENERATION, task_metrics.TURNED_AROUND} <= kinds
  else:
    assert kinds == {task_metrics.RANK_CLASSIFICATION}


def test_every_eval_mixture_member_carries_seqio_metrics(setup):
  for cluster in clusters.CLUSTERS:
    mixture = seqio.get_mixture_or_task(mixtures.holdout_eval(cluster))
    for task in mixture.tasks:
      assert task.score_metric_fns if task.name.endswith("_scoring") else task.predict_metric_fns
      assert "test" in task.splits
