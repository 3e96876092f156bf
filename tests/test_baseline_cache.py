"""The baseline's evaluation is stored once and reused: a second evaluation with the same
checkpoint and configuration neither restores nor evaluates it and returns the same results;
a changed checkpoint, option or template is a miss."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from etils import epath
from fake_evaluation import CharVocab, FakeModel, cb_examples
from tiny_training import t5_vocabulary_model

from flan.data import examples as examples_lib
from flan.data import templates as templates_lib
from flan.evaluation import baseline_cache, holdout, inference, periodic
from flan.model import partitioning
from flan.training import checkpoints

TEMPLATES = (
  templates_lib.Template("{premise}\nQ: {hypothesis}\n{options}", "{answer}"),
  templates_lib.Template("Premise: {premise} Hypothesis: {hypothesis}? {options}", "{answer}"),
)
LENGTHS = {"inputs": 64, "targets": 16}
CHECKPOINT = {"kind": "params", "path": "/ckpt/base", "step": None, "content": "files:abc"}
TUNED, BASELINE = {"w": np.float32(0.37)}, {"w": np.float32(-1.3)}


@pytest.fixture
def cb_only(monkeypatch):
  """The nli cluster with only cb prepared (13 test, 5 dev examples)."""
  data = {("cb", "test"): cb_examples(13), ("cb", "validation"): cb_examples(5, 100)}

  def load(dataset, split, *args, **kwargs):
    if dataset != "cb":
      raise examples_lib.DataNotPreparedError(f"{dataset} is not prepared")
    return list(data[(dataset, split)])

  monkeypatch.setattr(examples_lib, "load_examples", load)
  monkeypatch.setattr(
    examples_lib, "num_input_examples", lambda *args, **kwargs: len(load(*args, **kwargs))
  )
  monkeypatch.setattr(examples_lib, "get_templates", lambda dataset, *a, **k: TEMPLATES)


def _mesh():
  return partitioning.make_mesh({"data": 1, "model": 1}, devices=jax.devices()[:1])


class Loader:
  """The baseline's parameters, counting how often they are restored."""

  def __init__(self):
    self.calls = 0

  def __call__(self):
    self.calls += 1
    return BASELINE


def _untimed(results):
  return {k: v for k, v in results.items() if k not in ("seconds", "example_templates_per_second")}


def _evaluate(cache, loader, output_dir=None, **kwargs):
  model = FakeModel()
  runner = inference.ModelRunner(model, _mesh(), 4)
  results = holdout.evaluate_cluster(
    model,
    TUNED,
    _mesh(),
    cluster="nli",
    vocabulary=CharVocab(),
    data_dir="/data/tfds",
    feature_lengths=LENGTHS,
    output_dir=None if output_dir is None else str(output_dir),
    batch_size=4,
    baseline_params=loader,
    datasets=["cb"],
    runner=runner,
    baseline_cache=cache,
    **kwargs,
  )
  return results, runner.stats["score_batches"]


def test_a_second_evaluation_reuses_the_baseline_without_restoring_or_evaluating_it(
  cb_only, tmp_path
):
  cache = baseline_cache.BaselineCache(tmp_path / "cache", CHECKPOINT, FakeModel.config)
  loader = Loader()
  first, batches_both = _evaluate(cache, loader, tmp_path / "first")
  assert loader.calls == 1
  (entry,) = (tmp_path / "cache" / baseline_cache.SUBDIR).glob("nli-*.json")
  assert json.loads(entry.read_text())["key"]["checkpoint"] == CHECKPOINT

  second, batches_tuned = _evaluate(cache, loader, tmp_path / "second")
  assert loader.calls == 1  # not restored again
  assert 0 < batches_tuned < batches_both  # and not evaluated: only the tuned model's batches
  _, batches_alone = _evaluate(None, None)  # the tuned model on its own
  assert batches_tuned == batches_alone
  assert second["models"]["baseline"] == first["models"]["baseline"]  # timings included
  assert _untimed(second["models"]["tuned"]) == _untimed(first["models"]["tuned"])
  assert _untimed(second["models"]["baseline"]) != _untimed(second["models"]["tuned"])
  # The reused predictions are written as the evaluated ones were.
  for name in ("baseline", "tuned"):
    a = (tmp_path / "first" / "predictions" / name / "cb.jsonl").read_text()
    assert a and a == (tmp_path / "second" / "predictions" / name / "cb.jsonl").read_text()


def test_a_changed_option_template_or_checkpoint_evaluates_the_baseline_again(
  cb_only, tmp_path, monkeypatch
):
  root = tmp_path / "cache"
  cache = baseline_cache.BaselineCache(root, CHECKPOINT, FakeModel.config)
  loader = Loader()
  _evaluate(cache, loader)
  _evaluate(cache, loader, max_examples=4)  # another evaluation option
  assert loader.calls == 2
  _evaluate(cache, loader, num_templates=1)
  assert loader.calls == 3
  changed = dict(CHECKPOINT, content="files:abd")  # the checkpoint's files changed
  _evaluate(baseline_cache.BaselineCache(root, changed, FakeModel.config), loader)
  assert loader.calls == 4
  other_model = (("name", "fake"), ("layers", 2))
  _evaluate(baseline_cache.BaselineCache(root, CHECKPOINT, other_model), loader)
  assert loader.calls == 5
  edited = (TEMPLATES[0], templates_lib.Template("{premise} {hypothesis}? {options}", "{answer}"))
  monkeypatch.setattr(examples_lib, "get_templates", lambda dataset, *a, **k: edited)
  _evaluate(cache, loader)
  assert loader.calls == 6
  monkeypatch.setattr(examples_lib, "get_templates", lambda dataset, *a, **k: TEMPLATES)
  _evaluate(cache, loader)  # every earlier configuration is still a hit
  _evaluate(cache, loader, max_examples=4)
  assert loader.calls == 6
  assert len(list((root / baseline_cache.SUBDIR).glob("*.json"))) == 6


def test_a_damaged_entry_is_evaluated_again_and_rewritten(cb_only, tmp_path):
  cache = baseline_cache.BaselineCache(tmp_path / "cache", CHECKPOINT, FakeModel.config)
  loader = Loader()
  first, _ = _evaluate(cache, loader)
  (entry,) = (tmp_path / "cache" / baseline_cache.SUBDIR).glob("*.json")
  entry.write_text(entry.read_text()[:100])
  again, _ = _evaluate(cache, loader)
  assert loader.calls == 2
  assert _untimed(again["models"]["baseline"]) == _untimed(first["models"]["baseline"])
  _evaluate(cache, loader)
  assert loader.calls == 2


def test_the_periodic_evaluation_reuses_its_subsets_baseline_across_runs(cb_only, tmp_path):
  cache = baseline_cache.BaselineCache(tmp_path / "cache", CHECKPOINT, FakeModel.config)
  loader = Loader()

  def evaluator():
    return periodic.PeriodicEvaluator(
      FakeModel(),
      _mesh(),
      cluster="nli",
      vocabulary=CharVocab(),
      data_dir="/data/tfds",
      feature_lengths=LENGTHS,
      batch_size=4,
      max_examples=4,
      num_templates=1,
      load_baseline=loader,
      baseline_cache=cache,
    )

  first = evaluator().evaluate(TUNED, step=10)
  assert loader.calls == 1
  second = evaluator().evaluate(TUNED, step=10)  # a later run
  assert loader.calls == 1
  assert second["baseline"] == first["baseline"]
  assert first["baseline"]["datasets"]["cb"]["templates"][0]["test"]["num_examples"] == 4


def test_checkpoint_fingerprint_follows_the_files_or_the_manifest(tmp_path):
  weights = tmp_path / "weights"
  (weights / "sub").mkdir(parents=True)
  (weights / "params.bin").write_bytes(b"12345")
  (weights / "sub" / "x").write_bytes(b"1")
  saved = checkpoints.SavedWeights(checkpoints.PARAMS, epath.Path(weights))
  first = saved.fingerprint()
  assert first["path"] == str(weights) and first["content"].startswith("files:")
  assert saved.fingerprint() == first  # cheap and stable
  (weights / "params.bin").write_bytes(b"123456")  # another size
  assert saved.fingerprint()["content"] != first["content"]
  # A checksummed checkpoint is identified by its manifest.
  checkpoints.write_manifest(weights)
  sealed = saved.fingerprint()["content"]
  assert sealed.startswith("manifest:")
  (weights / "sub" / "x").write_bytes(b"2")  # same size and, maybe, same second
  checkpoints.write_manifest(weights)
  assert saved.fingerprint()["content"] != sealed


@pytest.mark.realdata
def test_flan_evaluate_restores_the_baseline_only_when_its_results_are_not_cached(
  data_dir, vocab_path, tmp_path, monkeypatch
):
  from flan import evaluate as eval_lib
  from flan.training import train_step

  model = t5_vocabulary_model()
  shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}
  params = model.init(jax.random.PRNGKey(0), shapes)
  ckpts = checkpoints.Checkpoints(str(tmp_path / "base"), async_save=False)
  ckpts.save(3, train_step.TrainState(step=jnp.int32(3), params=params, opt_state={}))
  ckpts.close()
  restored = []
  real_restore = checkpoints.restore_params

  def restore(model, mesh, path, *, setting="CHECKPOINT_PATH"):
    restored.append(setting)
    return real_restore(model, mesh, path, setting=setting)

  monkeypatch.setattr(checkpoints, "restore_params", restore)

  def run(**kwargs):
    return eval_lib.evaluate(
      model=model,
      checkpoint_path=str(tmp_path / "base"),
      baseline_checkpoint_path=str(tmp_path / "base" / "checkpoint_3"),
      heldout_cluster="nli",
      datasets=["cb"],
      eval_output_dir=str(tmp_path / "eval"),
      data_dir=data_dir,
      vocabulary=vocab_path,
      batch_size=8,
      task_feature_lengths={"inputs": 256, "targets": 8},
      num_templates=1,
      cache_dir=str(tmp_path / "cache"),
      **kwargs,
    )

  first = run(max_examples=3)
  assert restored == ["CHECKPOINT_PATH", "BASELINE_CHECKPOINT_PATH"]
  second = run(max_examples=3)
  assert restored[2:] == ["CHECKPOINT_PATH"]  # the baseline is reused, not restored
  assert second["models"]["baseline"] == first["models"]["baseline"]
  assert second["metadata"]["baseline_checkpoint"] == {
    "path": str(tmp_path / "base" / "checkpoint_3"),
    "step": 3,
  }
  run(max_examples=2)  # another configuration: evaluated again
  assert restored[3:] == ["CHECKPOINT_PATH", "BASELINE_CHECKPOINT_PATH"]
