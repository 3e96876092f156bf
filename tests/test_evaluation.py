"""Evaluation: batching, rank classification, generation, aggregation and the outputs.

Most tests use a fake model (jittable score_batch / predict_batch) and synthetic examples,
so they run in seconds and do not depend on TFDS; the real tiny T5 checks batched scoring
against one-example-at-a-time scoring; the realdata test trains then evaluates.
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fake_evaluation import CharVocab, FakeModel, cb_examples

from flan.data import examples as examples_lib
from flan.data import templates as templates_lib
from flan.evaluation import holdout as evaluation
from flan.evaluation import inference, report
from flan.model import partitioning

CB_TEMPLATES = (
  templates_lib.Template("{premise}\nQ: {hypothesis}\n{options}", "{answer}"),
  templates_lib.Template("Premise: {premise} Hypothesis: {hypothesis}? {options}", "{answer}"),
  templates_lib.Template("Write a hypothesis for: {premise}", "{hypothesis}"),
)
GEN_TEMPLATES = (
  templates_lib.Template("{concepts}", "{answer}"),
  templates_lib.Template("Concepts: {concepts}", "{answer}"),
  templates_lib.Template("Which concepts? {answer}", "{concepts}"),
)


def _common_gen(n):
  return [
    {
      "concepts": f"dog, ball {i}",
      "answer": f"dog, ball {i}",
      "references": [f"dog, ball {i}", "a dog plays"],
      "example_id": i,
    }
    for i in range(n)
  ]


@pytest.fixture
def fake_data(monkeypatch):
  """cb (classification: 2 rank templates + 1 turned around) and common_gen (generation)."""
  data = {
    ("cb", "test"): cb_examples(13),
    ("cb", "validation"): cb_examples(5, 100),
    ("cb", "train"): cb_examples(20, 200),
    ("common_gen", "test"): _common_gen(6),
    ("common_gen", "validation"): [],
    ("common_gen", "train"): _common_gen(4),
  }
  templates = {"cb": CB_TEMPLATES, "common_gen": GEN_TEMPLATES}
  monkeypatch.setattr(
    examples_lib,
    "load_examples",
    lambda dataset, split, *args, **kwargs: list(data[dataset, split]),
  )
  monkeypatch.setattr(
    examples_lib,
    "num_input_examples",
    lambda dataset, split, *args, **kwargs: len(data[dataset, split]),
  )
  real_templates = examples_lib.get_templates
  monkeypatch.setattr(
    examples_lib,
    "get_templates",
    lambda dataset, *args, **kwargs: templates.get(dataset) or real_templates(dataset),
  )
  return data


def _template(dataset, i, options):
  """Template i of `dataset` as the evaluation reads it (its evaluated seqio task)."""
  config = evaluation.task_config(None, CharVocab(), options)
  return evaluation.load_dataset(dataset, config, options)["templates"][i]


def _one(data, example_id):
  """`data` (a `TemplateData`) with only example `example_id` in its test split."""
  import dataclasses

  keep = tuple(p for p in data.splits["test"] if p.example_id == example_id)
  return dataclasses.replace(data, splits={"test": keep, "validation": ()})


def _mesh(n):
  return partitioning.make_mesh({"data": n, "model": 1}, devices=jax.devices()[:n])


PARAMS = {"w": np.float32(0.37)}
LENGTHS = {"inputs": 64, "targets": 16}


def test_padded_length_rounds_up_with_at_most_a_quarter_of_padding_within_the_cap():
  assert inference.padded_length(1, 512) == inference.MIN_LENGTH
  assert inference.padded_length(33, 512) == 40
  assert inference.padded_length(64, 512) == 64
  assert inference.padded_length(700, 512) == 512
  sizes = {inference.padded_length(n, 4096) for n in range(1, 4097)}
  assert len(sizes) <= 40  # few distinct shapes to compile
  for n in range(9, 4097):
    assert n <= inference.padded_length(n, 4096) <= 1.25 * n + 8


def test_batched_sharded_scores_equal_one_row_at_a_time_and_padding_is_dropped():
  runner8 = inference.ModelRunner(FakeModel(), _mesh(8), 8)
  runner1 = inference.ModelRunner(FakeModel(), _mesh(1), 1)
  rng = np.random.default_rng(0)
  inputs = [list(rng.integers(3, 200, size=rng.integers(2, 30))) + [1] for _ in range(13)]
  targets = [list(rng.integers(3, 200, size=rng.integers(1, 6))) + [1] for _ in range(13)]
  batched = runner8.score(PARAMS, inputs, targets, (32, 8))
  single = np.concatenate(
    [runner1.score(PARAMS, [i], [t], (32, 8)) for i, t in zip(inputs, targets)]
  )
  assert batched.shape == (13,)
  np.testing.assert_allclose(batched, single, rtol=1e-6)
  assert runner8.stats["score_batches"] == 2 and runner8.stats["padding_rows"] == 3


def test_a_splits_last_partial_batch_is_padded_only_to_the_next_power_of_two_rows():
  runner = inference.ModelRunner(FakeModel(), _mesh(1), 8)
  rng = np.random.default_rng(1)
  inputs = [list(rng.integers(3, 200, size=rng.integers(2, 30))) + [1] for _ in range(11)]
  targets = [list(rng.integers(3, 200, size=rng.integers(1, 6))) + [1] for _ in range(11)]
  scores = runner.score(PARAMS, inputs, targets, (32, 8))
  assert runner.stats["score_batches"] == 2 and runner.stats["padding_rows"] == 1  # 8 + 3 of 4
  alone = inference.ModelRunner(FakeModel(), _mesh(1), 1)
  single = [alone.score(PARAMS, [i], [t], (32, 8))[0] for i, t in zip(inputs, targets)]
  np.testing.assert_allclose(scores, single, rtol=1e-6)
  runner.stats.clear()
  runner.predict(PARAMS, inputs, 32, 4)
  assert runner.stats["predict_batches"] == 2 and runner.stats["padding_rows"] == 1


def test_runner_rejects_a_batch_size_that_does_not_split_over_the_mesh():
  with pytest.raises(ValueError, match="not divisible"):
    inference.ModelRunner(FakeModel(), _mesh(8), 12)


def test_rank_classification_predicts_the_argmax_option(fake_data):
  runner = inference.ModelRunner(FakeModel(), _mesh(8), 8)
  options = evaluation.EvalOptions(LENGTHS)
  summary, records = evaluation.evaluate_template(
    runner, PARAMS, CharVocab(), "cb", 0, _template("cb", 0, options), "test", [], options
  )
  assert summary["kind"] == "rank_classification" and summary["num_examples"] == 13
  for r in records:
    assert len(r["scores"]) == 3
    assert r["prediction"] == r["options"][int(np.argmax(r["scores"]))]
    assert r["correct"] == (r["prediction"] == fake_data[("cb", "test")][r["example_id"]]["answer"])
  accuracy = 100 * np.mean([r["correct"] for r in records])
  assert summary["metrics"]["accuracy"] == pytest.approx(accuracy)
  assert summary["score"] == summary["metrics"]["accuracy"]
  assert "mean_f1" in summary["metrics"]


def test_generation_decodes_until_eos_and_scores_against_references(fake_data):
  runner = inference.ModelRunner(FakeModel(), _mesh(8), 8)
  options = evaluation.EvalOptions({"inputs": 64, "targets": 32})
  summary, records = evaluation.evaluate_template(
    runner,
    PARAMS,
    CharVocab(),
    "common_gen",
    0,
    _template("common_gen", 0, options),
    "test",
    [],
    options,
  )
  # The echo model reproduces the input, which is the first reference.
  assert [r["prediction"] for r in records] == [f"dog, ball {i}" for i in range(6)]
  assert summary["kind"] == "generation"
  assert summary["metrics"]["rouge1"] == pytest.approx(100.0)
  assert all(r["correct"] for r in records)


def _check_outputs(out_dir, results, data, datasets, num_templates):
  out_dir = pathlib.Path(out_dir)
  for name in ("results.json", "results.md", "scores.png"):
    assert (out_dir / name).stat().st_size > 0
  assert json.loads((out_dir / "results.json").read_text())["cluster"] == results["cluster"]
  assert report.is_finite_tree(results)
  for model in results["models"]:
    for dataset in datasets:
      lines = (out_dir / "predictions" / model / f"{dataset}.jsonl").read_text().splitlines()
      rows = [json.loads(line) for line in lines]
      for split in ("test", "validation"):
        expected = sorted(e["example_id"] for e in data[(dataset, split)])
        for t in range(num_templates[dataset]):
          seen = sorted(r["example_id"] for r in rows if r["template"] == t and r["split"] == split)
          assert seen == expected, (model, dataset, split, t)


def test_evaluate_cluster_writes_every_output_and_each_example_once_per_template(
  fake_data, tmp_path
):
  results = evaluation.evaluate_cluster(
    FakeModel(),
    PARAMS,
    _mesh(8),
    cluster="nli",
    vocabulary=CharVocab(),
    data_dir=None,
    feature_lengths=LENGTHS,
    output_dir=str(tmp_path),
    batch_size=8,
    baseline_params={"w": np.float32(-1.3)},
    datasets=["cb"],
  )
  assert set(results["models"]) == {"tuned", "baseline"}
  cb = results["models"]["tuned"]["datasets"]["cb"]
  assert [t["kind"] for t in cb["templates"]] == [
    "rank_classification",
    "rank_classification",
    "generation_turned_around",
  ]
  assert cb["mean"] == pytest.approx(np.mean([t["test"]["score"] for t in cb["templates"][:2]]))
  assert cb["dev_selected_template"] in (0, 1)
  assert results["models"]["tuned"]["cluster"]["num_datasets"] == 1
  _check_outputs(tmp_path, results, fake_data, ["cb"], {"cb": 3})
  md = (tmp_path / "results.md").read_text()
  assert "cb" in md and "baseline mean" in md and "cluster average" in md


def test_generation_templates_whose_target_is_not_the_answer_are_reported_not_averaged(fake_data):
  results = evaluation.evaluate_cluster(
    FakeModel(),
    PARAMS,
    _mesh(8),
    cluster="struct_to_text",
    vocabulary=CharVocab(),
    data_dir=None,
    feature_lengths={"inputs": 64, "targets": 32},
    output_dir=None,
    batch_size=8,
    datasets=["common_gen"],
  )
  d = results["models"]["tuned"]["datasets"]["common_gen"]
  assert [t["kind"] for t in d["templates"]] == [
    "generation",
    "generation",
    "generation_turned_around",
  ]
  assert set(d["templates"][2]["test"]["metrics"]) == {"rouge1", "rouge2", "rougeL"}
  assert d["mean"] == pytest.approx(np.mean([t["test"]["score"] for t in d["templates"][:2]]))
  assert d["dev_selected"] is None and d["score"] == d["mean"]  # no dev split


def test_evaluate_cluster_records_unprepared_datasets_as_missing(fake_data, monkeypatch, tmp_path):
  real = examples_lib.load_examples

  def load(dataset, split, *args, **kwargs):
    if dataset == "rte":
      raise examples_lib.DataNotPreparedError("rte is not prepared; prepare it with ...")
    return real(dataset, split, *args, **kwargs)

  monkeypatch.setattr(examples_lib, "load_examples", load)
  monkeypatch.setattr(examples_lib, "num_input_examples", lambda dataset, split, *a, **k: 5)
  results = evaluation.evaluate_cluster(
    FakeModel(),
    PARAMS,
    _mesh(8),
    cluster="nli",
    vocabulary=CharVocab(),
    data_dir=None,
    feature_lengths=LENGTHS,
    output_dir=str(tmp_path),
    batch_size=8,
    datasets=["rte", "cb"],
  )
  tuned = results["models"]["tuned"]
  assert tuned["datasets"]["rte"]["status"] == "missing"
  assert "prepare" in tuned["datasets"]["rte"]["error"]
  assert tuned["cluster"]["missing"] == ["rte"]
  assert "missing" in (tmp_path / "results.md").read_text()


def test_evaluate_cluster_rejects_datasets_outside_the_cluster(fake_data):
  with pytest.raises(ValueError, match="not in cluster 'nli'"):
    evaluation.evaluate_cluster(
      FakeModel(),
      PARAMS,
      _mesh(8),
      cluster="nli",
      vocabulary=CharVocab(),
      data_dir=None,
      feature_lengths=LENGTHS,
      output_dir=None,
      batch_size=8,
      datasets=["common_gen"],
    )


def test_few_shot_prompts_fit_the_input_length_and_are_recorded(fake_data, tmp_path):
  lengths = {"inputs": 128, "targets": 16}
  results = evaluation.evaluate_cluster(
    FakeModel(),
    PARAMS,
    _mesh(8),
    cluster="struct_to_text",
    vocabulary=CharVocab(),
    data_dir=None,
    feature_lengths=lengths,
    output_dir=str(tmp_path),
    batch_size=8,
    num_shots=2,
    datasets=["common_gen"],
  )
  rows = [
    json.loads(line)
    for line in (tmp_path / "predictions" / "tuned" / "common_gen.jsonl").read_text().splitlines()
  ]
  assert rows and all(0 < r["num_shots"] <= 2 for r in rows)
  assert all(len(r["inputs"]) <= lengths["inputs"] - 1 for r in rows)  # 1 char = 1 token.
  assert any("\n\n\n" in r["inputs"] for r in rows)
  summary = results["models"]["tuned"]["datasets"]["common_gen"]["templates"][0]["test"]
  assert 0 < summary["mean_shots"] <= 2


# ----------------------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def tiny_model():
  """A 2+2-layer float32 T5 over the 256 character ids, and its parameters."""
  from flan.model import encoder_decoder as model_lib
  from flan.model import network

  config = network.T5Config(
    vocab_size=256,
    emb_dim=32,
    num_heads=2,
    num_encoder_layers=2,
    num_decoder_layers=2,
    head_dim=16,
    mlp_dim=64,
    dropout_rate=0.0,
    dtype="float32",
  )
  model = model_lib.EncoderDecoderModel(config)
  shapes = {
    "encoder_input_tokens": (8, 64),
    "decoder_input_tokens": (8, 16),
    "decoder_target_tokens": (8, 16),
    "decoder_loss_weights": (8, 16),
  }
  return model, jax.jit(lambda rng: model.init(rng, shapes))(jax.random.PRNGKey(0))


@pytest.mark.slow
def test_real_model_batched_scores_equal_one_example_at_a_time(fake_data, tiny_model):
  model, params = tiny_model
  vocab = CharVocab()
  options = evaluation.EvalOptions(LENGTHS)
  rows = fake_data[("cb", "test")]
  data = _template("cb", 0, options)
  runner8 = inference.ModelRunner(model, _mesh(8), 8)
  batched, records = evaluation.evaluate_template(
    runner8, runner8.place(params), vocab, "cb", 0, data, "test", [], options
  )
  runner1 = inference.ModelRunner(model, _mesh(1), 1)
  p1 = runner1.place(params)
  for fields, record in zip(rows, records):
    one = _one(data, fields["example_id"])
    _, (single,) = evaluation.evaluate_template(
      runner1, p1, vocab, "cb", 0, one, "test", [], options
    )
    np.testing.assert_allclose(record["scores"], single["scores"], rtol=1e-5, atol=1e-5)
    assert record["prediction"] == fields["options"][int(np.argmax(single["scores"]))]
  # The shared-encoder scorer (used above) equals score_batch on (example, option) rows.
  assert runner8.share_encoder
  rows_runner = inference.ModelRunner(model, _mesh(8), 8, share_encoder=False)
  _, row_records = evaluation.evaluate_template(
    rows_runner, runner8.place(params), vocab, "cb", 0, data, "test", [], options
  )
  np.testing.assert_allclose(
    [r["scores"] for r in row_records], [r["scores"] for r in records], rtol=1e-5, atol=1e-5
  )
  # Examples with different numbers of options (ReCoRD-like), several batches.
  rng = np.random.default_rng(1)
  inputs = [list(rng.integers(3, 250, size=rng.integers(3, 40))) + [1] for _ in range(7)]
  opts = [
    [list(rng.integers(3, 250, size=rng.integers(1, 6))) + [1] for _ in range(rng.integers(1, 6))]
    for _ in range(7)
  ]
  shared = runner8.score_options(runner8.place(params), inputs, opts, (40, 8))
  by_row = rows_runner.score_options(runner8.place(params), inputs, opts, (40, 8))
  assert [len(s) for s in shared] == [len(o) for o in opts]
  for a, b in zip(shared, by_row):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  # And against one direct score_batch call at the exact lengths (no power-of-two padding).
  fields, record = rows[0], records[0]
  enc = vocab.encode(record["inputs"])[:63] + [1]
  tgts = [vocab.encode(option)[:15] + [1] for option in fields["options"]]
  width = max(len(t) for t in tgts)
  tgt = np.asarray([t + [0] * (width - len(t)) for t in tgts], np.int32)  # [3, width]
  dec_in = np.concatenate([np.zeros((3, 1), np.int32), tgt[:, :-1]], axis=1)
  direct = model.score_batch(
    params,
    {
      "encoder_input_tokens": np.asarray([enc] * 3, np.int32),
      "decoder_input_tokens": dec_in,
      "decoder_target_tokens": tgt,
      "decoder_loss_weights": (tgt > 0).astype(np.int32),
    },
  )
  np.testing.assert_allclose(np.asarray(direct), record["scores"], rtol=1e-5, atol=1e-5)
  assert batched["kind"] == "rank_classification"


@pytest.mark.slow
def test_real_model_batched_greedy_decoding_equals_one_example_at_a_time(fake_data, tiny_model):
  model, params = tiny_model
  vocab = CharVocab()
  options = evaluation.EvalOptions({"inputs": 32, "targets": 8})
  rows = fake_data[("common_gen", "test")]
  data = _template("common_gen", 0, options)
  runner8 = inference.ModelRunner(model, _mesh(8), 8)
  summary, records = evaluation.evaluate_template(
    runner8, runner8.place(params), vocab, "common_gen", 0, data, "test", [], options
  )
  runner1 = inference.ModelRunner(model, _mesh(1), 1)
  p1 = runner1.place(params)
  for fields, record in zip(rows[:3], records):
    _, (single,) = evaluation.evaluate_template(
      runner1, p1, vocab, "common_gen", 0, _one(data, fields["example_id"]), "test", [], options
    )
    assert single["prediction"] == record["prediction"]
  assert report.is_finite_tree(summary)


# ----------------------------------------------------------------------------- real data

REALDATA_CLUSTER = "coreference"  # wsc is prepared in ../shared; the other two are not.


def _tiny_t5(vocab_size):
  from flan.model import encoder_decoder as model_lib
  from flan.model import network

  return model_lib.EncoderDecoderModel(
    network.T5Config(
      vocab_size=vocab_size,
      emb_dim=8,
      num_heads=4,
      head_dim=3,
      mlp_dim=16,
      num_encoder_layers=2,
      num_decoder_layers=2,
      dropout_rate=0.0,
      dtype="float32",
    )
  )


@pytest.mark.slow
@pytest.mark.realdata
def test_realdata_smoke_training_then_heldout_evaluation_writes_everything(
  data_dir, vocab_path, tmp_path
):
  from tiny_training import train as run_train

  from flan import evaluate as eval_lib

  model = _tiny_t5(32128)
  lengths = {"inputs": 128, "targets": 16}
  run_dir = tmp_path / "run"
  # Smoke training on an NLI task (outside the held-out cluster), evaluated at the end.
  out = run_train(
    model=model,
    mixture_or_task_name="flan_rte_train",
    task_feature_lengths=lengths,
    train_steps=2,
    model_dir=str(run_dir),
    batch_size=8,
    data_dir=data_dir,
    vocabulary=vocab_path,
    heldout_cluster=REALDATA_CLUSTER,
    eval_batch_size=64,
    log_every=1,
  )
  assert out["eval"] is not None
  (results_file,) = list(run_dir.glob("eval/**/results.json"))
  eval_dir = results_file.parent
  results = json.loads(results_file.read_text())
  assert report.is_finite_tree(results)
  tuned = results["models"]["tuned"]
  assert tuned["datasets"]["wsc"]["status"] == "ok"
  assert set(tuned["cluster"]["missing"]) == {"definite_pronoun_resolution", "winogrande"}
  for name in ("results.md", "scores.png"):
    assert (eval_dir / name).stat().st_size > 0
  data = {
    ("wsc", s): examples_lib.load_examples("wsc", s, data_dir) for s in ("test", "validation")
  }
  _check_outputs(eval_dir, results, data, ["wsc"], {"wsc": len(examples_lib.get_templates("wsc"))})
  for t in tuned["datasets"]["wsc"]["templates"]:
    assert t["test"]["num_examples"] == len(data[("wsc", "test")])

  # `python -m flan.evaluate`'s function: restore the checkpoint's parameters, with the same
  # checkpoint as "baseline", so both columns must agree.
  again = eval_lib.evaluate(
    model=model,
    checkpoint_path=str(run_dir),
    heldout_cluster=REALDATA_CLUSTER,
    baseline_checkpoint_path=str(run_dir),
    eval_output_dir=str(tmp_path / "eval2"),
    data_dir=data_dir,
    vocabulary=vocab_path,
    batch_size=64,
    task_feature_lengths=lengths,
    datasets=["wsc"],
  )
  assert again["metadata"]["checkpoint"]["step"] == 2
  wsc = {m: again["models"][m]["datasets"]["wsc"] for m in ("tuned", "baseline")}
  assert wsc["tuned"]["mean"] == pytest.approx(wsc["baseline"]["mean"])
  assert wsc["tuned"]["mean"] == pytest.approx(tuned["datasets"]["wsc"]["mean"])
  assert (tmp_path / "eval2" / "predictions" / "baseline" / "wsc.jsonl").is_file()


@pytest.mark.slow
def test_eval_cli_reports_a_bad_checkpoint_path_in_one_line(tmp_path):
  import subprocess
  import sys

  root = pathlib.Path(__file__).resolve().parent.parent
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "flan.evaluate",
      "--gin_file=configs/models/tiny.gin",
      "--gin_file=configs/runs/eval.gin",
      f"--gin.CHECKPOINT_PATH={tmp_path / 'none'}",
      "--gin.HELDOUT_CLUSTER=coreference",
    ],
    cwd=root,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 1
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "does not exist" in errors[0] and "CHECKPOINT_PATH" in errors[0]
  assert "Traceback" not in proc.stderr


def test_restore_params_reads_a_hugging_face_directory_onto_the_mesh():
  from flan.model import encoder_decoder as model_lib
  from flan.model import hf
  from flan.training import checkpoints

  fixture = pathlib.Path(__file__).resolve().parent / "testdata" / "hf_tiny_t5"
  config, expected = hf.params_from_hf(fixture, dtype="float32")
  model = model_lib.EncoderDecoderModel(config)
  mesh = _mesh(8)
  params, info = checkpoints.restore_params(model, mesh, str(fixture))
  assert info == {"path": str(fixture), "step": None}
  flat = jax.tree_util.tree_leaves_with_path(params)
  assert len(flat) == len(jax.tree.leaves(expected))
  for (path, x), y in zip(flat, jax.tree.leaves(expected)):
    assert isinstance(x, jax.Array) and x.sharding.mesh.shape == mesh.shape, path
    np.testing.assert_array_equal(np.asarray(x), y)
  with pytest.raises(Exception, match="does not exist"):
    checkpoints.restore_params(model, mesh, str(fixture / "nope"))


def test_restore_params_reads_only_the_parameters_of_a_trainer_checkpoint(tmp_path):
  from flan import evaluate as eval_lib
  from flan.model import encoder_decoder as model_lib
  from flan.model import hf
  from flan.training import checkpoints
  from flan.training import train_step as trainer

  fixture = pathlib.Path(__file__).resolve().parent / "testdata" / "hf_tiny_t5"
  config, params = hf.params_from_hf(fixture, dtype="float32")
  state = trainer.TrainState(
    step=jnp.int32(7),
    params=jax.tree.map(jnp.asarray, params),
    opt_state={"moments": jnp.ones((3, 5))},
  )
  ckpts = checkpoints.Checkpoints(str(tmp_path), async_save=False)
  ckpts.save(7, state, {"position": 7})
  ckpts.close()
  model = model_lib.EncoderDecoderModel(config)
  for path in (tmp_path, tmp_path / "checkpoint_7"):  # a MODEL_DIR or one checkpoint
    restored, info = checkpoints.restore_params(model, _mesh(8), str(path))
    assert info == {"path": str(tmp_path / "checkpoint_7"), "step": 7}
    for x, y in zip(jax.tree.leaves(restored), jax.tree.leaves(params)):
      np.testing.assert_array_equal(np.asarray(x), y)
  assert eval_lib.default_output_dir(str(tmp_path / "checkpoint_7"), None, None) == str(
    tmp_path / "eval"
  )
