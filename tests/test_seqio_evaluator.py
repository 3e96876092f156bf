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
from tiny_training import t5_vocabulary_model

from flan.data import clusters, mixtures, task_metrics, tasks, vocabularies
from flan.evaluation import holdout, inference, seqio_evaluator
from flan.model import partitioning

LENGTHS = {"inputs": 96, "targets": 8}
pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.fixture(scope="module")
def setup(data_dir, vocab_path):
  vocabulary = vocabularies.get_vocabulary(vocab_path)
  tasks.register(data_dir=data_dir, vocabulary=vocabulary, missing_datasets="skip")
  model = t5_vocabulary_model()
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


def _seqio_metrics(setup, mixture, split, num_examples):
  """seqio's Evaluator with the tiny model's predictions and scores (t5x's model fns)."""
  return seqio_evaluator.evaluate(
    setup["runner"],
    setup["params"],
    mixture,
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


def _compare(setup, mixture, evaluated, num_rows):
  """seqio's metrics on `mixture` equal ours (`evaluated`: {(dataset, template): entry})."""
  for split in ("test", "validation"):
    theirs = _seqio_metrics(setup, mixture, split, num_rows)
    compared = 0
    for (d, i), template in evaluated.items():
      name = tasks.evaluated_task_name(d, i)
      if template[split] is None:  # no dev examples: seqio skips the task on `validation`
        assert name not in theirs and split == "validation"
        continue
      assert name in theirs, (name, split, sorted(theirs))
      assert all(math.isfinite(v) for v in theirs[name].values())
      assert theirs[name] == pytest.approx(template[split]["metrics"], rel=1e-6, abs=1e-6)
      compared += 1
    assert compared > 0


def test_seqio_evaluator_on_a_holdout_eval_mixture_equals_flan_evaluation(setup):
  # wsc: rank classification on both splits; seqio counts rows (2 options per example).
  cluster = "coreference"
  ours = _ours(setup, cluster, 4)
  members = [d for d in clusters.members(cluster) if mixtures.prepared(d, setup["data_dir"])]
  assert members and all(ours[d]["status"] == "ok" for d in members)
  evaluated = {(d, i): t for d in members for i, t in enumerate(ours[d]["templates"])}
  assert {t["kind"] for t in evaluated.values()} == {task_metrics.RANK_CLASSIFICATION}
  _compare(setup, mixtures.holdout_eval(cluster), evaluated, 8)


def test_seqio_evaluator_on_generation_members_equals_flan_evaluation(setup):
  # Members of flan_holdout_summarization_eval: generation (t0) and turned-around (t8/t9)
  # templates of two datasets with test and dev examples, as a mixture of their own.
  picked = [("aeslc", 0), ("aeslc", 9), ("samsum", 0), ("samsum", 8)]
  mixture = seqio.get_mixture_or_task(mixtures.holdout_eval("summarization"))
  names = [tasks.evaluated_task_name(d, i) for d, i in picked]
  assert set(names) <= {t.name for t in mixture.tasks}
  seqio.MixtureRegistry.remove("flan_test_generation_eval")
  seqio.MixtureRegistry.add("flan_test_generation_eval", [(n, 1.0) for n in names])
  config = holdout.task_config(setup["data_dir"], setup["vocabulary"], holdout.EvalOptions(LENGTHS))
  options = holdout.EvalOptions(LENGTHS, max_examples=2)
  evaluated = {}
  for d, i in picked:
    task = tasks.evaluated_task(d, i, config)
    splits = {s: holdout.read_prompts(task, s, LENGTHS, 2) for s in holdout.SPLITS}
    data = holdout.TemplateData(task, tasks.evaluated_kind(d, i, config), splits)
    evaluated[d, i] = {
      s: holdout.evaluate_template(
        setup["runner"], setup["params"], setup["vocabulary"], d, i, data, s, (), options
      )[0]
      for s in holdout.SPLITS
    }
  kinds = {tasks.evaluated_kind(d, i) for d, i in picked}
  assert kinds == {task_metrics.GENERATION, task_metrics.TURNED_AROUND}
  try:
    _compare(setup, "flan_test_generation_eval", evaluated, 2)
  finally:
    seqio.MixtureRegistry.remove("flan_test_generation_eval")


def test_every_eval_mixture_member_carries_seqio_metrics(setup):
  for cluster in clusters.CLUSTERS:
    mixture = seqio.get_mixture_or_task(mixtures.holdout_eval(cluster))
    for task in mixture.tasks:
      assert task.score_metric_fns if task.name.endswith("_scoring") else task.predict_metric_fns
      assert "test" in task.splits
