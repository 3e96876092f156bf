"""seqio's Evaluator scores FLAN's held-out eval mixtures, and its numbers are flan.evaluation's.

The tiny T5's predictions and scores are plugged into `seqio.evaluation.Evaluator` (as t5x's
infer-eval does) on `flan_holdout_<cluster>_eval` over the shared samples; every member with
data gets finite metrics, equal to what `flan.evaluation.holdout` reports for the same
model, template by template and split by split: one route from the examples to the numbers.
"""

import math

import jax
import pytest
import seqio

from flan.data import clusters, mixtures, task_metrics, tasks, vocabularies
from flan.evaluation import holdout, inference, seqio_evaluator
from flan.model import encoder_decoder as model_lib
from flan.model import network, partitioning

LENGTHS = {"inputs": 96, "targets": 8}
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


def _seqio_metrics(setup, cluster, split, num_examples):
  """seqio's Evaluator with the tiny model's predictions and scores (t5x's model fns)."""
  return seqio_evaluator.evaluate(
    setup["runner"],
    setup["params"],
    mixtures.holdout_eval(cluster),
    LENGTHS,
    splits=(split,),
    num_examples=num_examples,
  )[split]


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
  "cluster, num_rows, num_examples",
  [
    # wsc: rank classification on both splits; seqio counts rows (2 options per example).
    ("coreference", 8, 4),
    ("summarization", 2, 2),  # generation and turned-around templates
  ],
)
def test_seqio_evaluator_on_a_holdout_eval_mixture_equals_flan_evaluation(
  setup, cluster, num_rows, num_examples
):
  ours = _ours(setup, cluster, num_examples)
  members = [d for d in clusters.members(cluster) if mixtures.prepared(d, setup["data_dir"])]
  assert members and all(ours[d]["status"] == "ok" for d in members)
  for split in ("test", "validation"):
    theirs = _seqio_metrics(setup, cluster, split, num_rows)
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
