"""Example access, template choice and the registered seqio tasks (mock and real data)."""

import collections

import numpy as np
import pytest
import tensorflow_datasets as tfds

from flan import show as inspect_cli
from flan.data import datasets as D
from flan.data import examples, tasks, vocabularies
from flan.data import preprocessors as flan_preprocessors
from flan.data import splits as splits_lib
from flan.data import templates as T
from flan.errors import UserError

ALL = [d.name for d in D.DATASETS]
MOCK_N = 10  # mock examples per split: small, but leaves a 1-example dev tail (10%).


@pytest.fixture
def default_registration():
  """Tests that re-register with other knobs restore the defaults afterwards."""
  yield
  tasks.register()


@pytest.fixture
def mock_data():
  # Random ints stay small so label-indexed candidates (hellaswag, story_cloze) survive.
  with tfds.testing.mock_data(num_examples=MOCK_N, max_value=3):
    yield


def _leftovers(text, fields):
  """Placeholders left in rendered text that no field value explains."""
  values = " ".join(
    v if isinstance(v, str) else " ".join(map(str, v))
    for v in fields.values()
    if isinstance(v, (str, list))
  )
  return [m for m in T.PLACEHOLDER.findall(text) if "{" + m + "}" not in values]


def _check_rendered(dataset, split, source_cols, rows):
  """Rendered columns of one eval/train task are complete and plausible."""
  assert len(source_cols["inputs"]) == len(rows), (dataset, split)
  by_id = {r["example_id"]: r for r in rows}
  for inputs, targets, ex_id in zip(
    source_cols["inputs"], source_cols["targets"], source_cols["example_id"]
  ):
    fields = by_id[ex_id]
    assert inputs.strip(), (dataset, split, ex_id)
    assert targets.strip(), (dataset, split, ex_id, inputs)
    assert not _leftovers(inputs, fields) and not _leftovers(targets, fields), (inputs, targets)


def _check_scoring(dataset, i, split, rows, data_dir=None):
  """Rank classification rows: one per option, the right ones marked, int32-able 0/1."""
  cols = tasks.get(tasks.scoring_task(dataset, i)).source.columns(split)
  eval_cols = tasks.get(tasks.eval_task(dataset, i)).source.columns(split)
  eval_target = dict(zip(eval_cols["example_id"], eval_cols["targets"]))
  per_example = collections.defaultdict(list)
  for ex_id, target, correct, opt in zip(
    cols["example_id"], cols["targets"], cols["is_correct"], cols["option_idx"]
  ):
    per_example[ex_id].append((target, correct, opt))
  assert set(per_example) == {r["example_id"] for r in rows}
  for r in rows:
    got = per_example[r["example_id"]]
    assert [o for _, _, o in got] == list(range(len(r["options"])))
    assert {c for _, c, _ in got} <= {0, 1}
    n_correct = sum(c for _, c, _ in got)
    answers = set(examples.correct_answers(r))
    assert answers <= set(r["options"]), (dataset, r)  # targets are among the options.
    assert n_correct == len(answers) and n_correct >= 1, (dataset, r)
    if "answers" not in r or len(answers) == 1:
      assert n_correct == 1
    # The generative eval target is one of the correct options' targets.
    assert eval_target[r["example_id"]] in {t for t, c, _ in got if c}


# ----------------------------------------------------------------------------- mock data


@pytest.mark.parametrize("dataset", ALL)
def test_every_template_renders_on_mock_data(mock_data, dataset):
  """The builder's real 4.9.10 schema, random values: every template fills completely."""
  spec = D.get(dataset)
  train_rows = tasks.load_examples(dataset, "train")
  assert train_rows, f"{dataset}: the preprocessor drops every mock example"
  cols = tasks.get(tasks.train_task(dataset)).source.columns("train", seed=0)
  _check_rendered(dataset, "train", cols, train_rows)
  for split in ("validation", "test"):
    rows = tasks.load_examples(dataset, split)
    declared = split in tasks.get(tasks.eval_task(dataset, 0)).splits
    # `validation` is declared only with a dev tail (which a preprocessor may still empty).
    assert declared or not rows, (dataset, split)
    if not declared:
      continue
    for i, template in enumerate(examples.get_templates(dataset)):
      cols = tasks.get(tasks.eval_task(dataset, i)).source.columns(split)
      _check_rendered(dataset, split, cols, rows)
      assert set(cols["template_idx"]) <= {i}
      if spec.classification and template.is_classification:
        _check_scoring(dataset, i, split, rows)


def test_mock_sizes_come_from_the_mocked_cardinality(mock_data):
  # rte: FLAN keeps back a 200-example tail, clamped to 10% of the 10 mock examples.
  assert examples.num_input_examples("rte", "train") == MOCK_N - 1
  assert examples.num_input_examples("rte", "validation") == 1
  assert examples.num_input_examples("rte", "test") == MOCK_N
  rows = tasks.load_examples("rte", "train")
  assert [r["example_id"] for r in rows] == list(range(len(rows)))
  assert tasks.get("flan_rte_train").source.num_input_examples("train") == MOCK_N - 1


def test_seqio_train_task_tokenizes_appends_eos_and_records_the_template(mock_data):
  task = tasks.get("flan_rte_train")
  ds = task.get_dataset({"inputs": 512, "targets": 32}, split="train", shuffle=False, seed=7)
  got = list(ds.as_numpy_iterator())
  assert len(got) == len(tasks.load_examples("rte", "train"))
  ids = [int(x["example_id"]) for x in got]
  expected = tasks.template_indices(7, "rte", ids, 10)
  assert [int(x["template_idx"]) for x in got] == expected.tolist()
  vocab = task.output_features["inputs"].vocabulary
  for x in got:
    assert x["inputs"].dtype == np.int32 and x["inputs"][-1] == vocab.eos_id == 1
    assert x["targets"][-1] == 1
    assert vocab.decode(x["inputs"].tolist()) == x["inputs_pretokenized"].decode()
  shuffled = task.get_dataset({"inputs": 512, "targets": 32}, split="train", shuffle=True, seed=7)
  pairs = {(int(x["example_id"]), int(x["template_idx"])) for x in shuffled.as_numpy_iterator()}
  assert pairs == set(zip(ids, expected.tolist()))  # the draw ignores the order.


def test_seqio_scoring_task_has_int32_is_correct(mock_data):
  task = tasks.get("flan_rte_t0_scoring")
  ds = task.get_dataset({"inputs": 512, "targets": 32}, split="test", shuffle=False)
  rows = list(ds.as_numpy_iterator())
  assert len(rows) == 2 * len(tasks.load_examples("rte", "test"))  # rte has 2 options.
  assert all(r["is_correct"].dtype == np.int32 for r in rows)
  assert sum(int(r["is_correct"]) for r in rows) == len(rows) // 2


def test_a_task_without_dev_examples_declares_no_validation_split_and_says_so(
  mock_data, monkeypatch
):
  # snli's dev split is FLAN's validation[:200]: declared while it has examples.
  assert tasks.get("flan_snli_t0").splits == ("validation", "test")
  real = examples.num_input_examples

  def no_dev(dataset, split, *args, **kwargs):  # a data dir whose dev slice is empty
    return 0 if split == "validation" else real(dataset, split, *args, **kwargs)

  monkeypatch.setattr(examples, "num_input_examples", no_dev)
  for name in ("flan_snli_t0", "flan_snli_t0_scoring"):
    task = tasks.get(name)
    assert task.splits == ("test",)
    with pytest.raises(UserError, match="has splits \\['test'\\], not 'validation'"):
      task.get_dataset({"inputs": 64, "targets": 8}, split="validation", shuffle=False)


def test_only_classification_templates_get_scoring_tasks():
  names = set(tasks.registered_names())
  for spec in D.DATASETS:
    for i, t in enumerate(examples.get_templates(spec.name)):
      assert tasks.eval_task(spec.name, i) in names
      expected = spec.classification and t.is_classification
      assert (tasks.scoring_task(spec.name, i) in names) == expected, (spec.name, i)
    assert tasks.train_task(spec.name) in names


# ----------------------------------------------------------------------------- knobs


def test_num_templates_one_always_draws_template_zero(mock_data, default_registration):
  tasks.register(num_templates=1)
  cols = tasks.get("flan_rte_train").source.columns("train", seed=3)
  assert set(cols["template_idx"]) == {0}


def test_template_modes(mock_data, default_registration):
  rows = tasks.load_examples("rte", "test")
  tasks.register(template_mode="no_template")
  plain = tasks.get("flan_rte_t0").source.columns("test")["inputs"]
  r = rows[0]
  assert (
    plain[0] == "\n\n".join([r["premise"], r["hypothesis"], T.format_options(r["options"])])
    or plain[0].startswith(r["premise"])
    or plain[0].startswith(r["hypothesis"])
  )
  tasks.register(template_mode="dataset_name")
  named = tasks.get("flan_rte_t0").source.columns("test")["inputs"]
  assert named[0] == "[rte] " + plain[0]


@pytest.mark.parametrize(
  "knobs, match",
  [
    ({"num_templates": 0}, "num_templates"),
    ({"num_templates": 11}, "num_templates"),
    ({"template_mode": "bogus"}, "template_mode"),
    ({"temperature": 0}, "temperature"),
    ({"mixing_cap": -1}, "mixing_cap"),
    ({"train_clusters": ["nli", "bogus"]}, "cluster"),
  ],
)
def test_bad_knobs_are_rejected_with_the_knob_named(knobs, match):
  with pytest.raises(ValueError, match=match):
    tasks.register(**knobs)


# ----------------------------------------------------------------------------- templates


def test_template_index_is_deterministic_per_seed_and_order_free():
  ids = np.arange(1000)
  a = examples.template_indices(3, "rte", ids, 10)
  assert a.dtype == np.int32
  np.testing.assert_array_equal(a, examples.template_indices(3, "rte", ids, 10))
  np.testing.assert_array_equal(a[[5, 700]], examples.template_indices(3, "rte", [5, 700], 10))
  assert (a != examples.template_indices(4, "rte", ids, 10)).mean() > 0.8
  assert (a != examples.template_indices(3, "cb", ids, 10)).mean() > 0.8
  assert set(examples.template_indices(3, "rte", ids, 4).tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("num_templates", [2, 7, 10])
def test_template_index_is_roughly_uniform(num_templates):
  counts = np.bincount(
    examples.template_indices(0, "anli", np.arange(20_000), num_templates), minlength=num_templates
  )
  expected = 20_000 / num_templates
  chi2 = float(((counts - expected) ** 2 / expected).sum())
  assert chi2 < 30.0, counts  # df <= 9: p < 0.001 above 27.9.


def test_render_example_checks_the_index():
  fields = {
    "premise": "p",
    "hypothesis": "h",
    "relation": "r",
    "options": ["yes", "no"],
    "answer": "yes",
  }
  inputs, target = tasks.render_example("rte", fields, 0)
  assert "p" in inputs and target == "yes"
  with pytest.raises(IndexError, match="10 templates"):
    tasks.render_example("rte", fields, 10)


# ----------------------------------------------------------------------------- errors


def test_unprepared_builder_names_builder_data_dir_and_command(tmp_path):
  with pytest.raises(examples.DataNotPreparedError) as e:
    tasks.load_examples("sentiment140", "train", data_dir=str(tmp_path))
  msg = str(e.value)
  assert "'sentiment140:1.0.0'" in msg and str(tmp_path) in msg
  assert f"python scripts/prepare_data.py --datasets sentiment140 --data_dir {tmp_path}" in msg
  with pytest.raises(examples.DataNotPreparedError, match="manual download"):
    examples.num_input_examples("xsum", "train", data_dir=str(tmp_path))


@pytest.mark.realdata
def test_a_missing_split_is_reported_with_the_splits_that_exist(data_dir):
  with pytest.raises(
    examples.DataNotPreparedError,
    match=r"has splits \['train', "
    r"'validation'\], but FLAN dataset 'rte' reads \['test'\]",
  ):
    examples.split_sizes("rte", "super_glue/rte:1.0.2", ["train", "test"], data_dir)


def test_unknown_names_list_close_matches():
  with pytest.raises(KeyError, match="Did you mean: rte"):
    tasks.load_examples("rtee", "train")
  with pytest.raises(ValueError, match="flan_rte_train"):
    tasks.get("flan_rte_trian")
  with pytest.raises(ValueError, match="splits train, validation, test"):
    examples.read_specs("rte", "dev", data_dir=None)


def test_vocabularies(tmp_path):
  assert isinstance(vocabularies.get_vocabulary(None), type(vocabularies.get_vocabulary("byte")))
  with pytest.raises(UserError, match="nope.model"):
    vocabularies.get_vocabulary(str(tmp_path / "nope.model"))


@pytest.mark.realdata
def test_t5_sentencepiece_vocabulary(vocab_path):
  vocab = vocabularies.get_vocabulary(vocab_path)
  assert vocab.vocab_size == 32100 and vocab.eos_id == 1 and vocab.pad_id == 0
  ids = vocab.encode("Is it true that the cat sat?")
  assert vocab.decode(ids) == "Is it true that the cat sat?"


# ----------------------------------------------------------------------------- inspect


def test_inspect_prints_rates_shares_and_examples(capsys, default_registration):
  code = inspect_cli.main(
    ["flan_holdout_nli_train", "--mock_data", "-n", "1", "--train_clusters", "sentiment"]
  )
  out = capsys.readouterr().out
  assert code == 0
  for d in ("imdb_reviews", "sentiment140", "sst2", "yelp_polarity_reviews"):
    assert f"flan_{d}_train" in out
  assert "25.00%" in out  # four tasks, equal mock sizes.
  assert "template_idx=" in out and "inputs:" in out and "targets:" in out


def test_inspect_reports_bad_names_without_a_traceback(capsys, default_registration):
  assert inspect_cli.main(["flan_rte_trian", "--mock_data"]) == 1
  assert "Did you mean" in capsys.readouterr().err


# ----------------------------------------------------------------------------- real data


def _prepared(data_dir):
  out = []
  for spec in D.DATASETS:
    try:
      examples.resolved_splits(spec.name, data_dir)
    except examples.DataNotPreparedError:
      continue
    out.append(spec.name)
  return out


@pytest.fixture(scope="module")
def restore_default_registration():
  yield
  tasks.register()


@pytest.fixture
def real_registration(data_dir, restore_default_registration):
  """Tasks registered on the shared samples (whatever other tests registered before)."""
  if tasks.current_config().data_dir != data_dir:
    tasks.register(data_dir=data_dir)
  return data_dir


@pytest.mark.realdata
def test_shared_data_covers_most_datasets(data_dir):
  assert len(_prepared(data_dir)) >= 38


@pytest.mark.realdata
@pytest.mark.parametrize("dataset", ALL)
def test_every_real_example_renders_through_the_registered_tasks(real_registration, dataset):
  data_dir = real_registration
  try:
    examples.resolved_splits(dataset, data_dir)
  except examples.DataNotPreparedError:
    pytest.skip(f"{dataset} is not in the shared samples")
  spec = D.get(dataset)
  rows = tasks.load_examples(dataset, "train", data_dir)
  total = examples.num_input_examples(dataset, "train", data_dir)
  assert rows and len(rows) <= total
  cols = tasks.get(tasks.train_task(dataset)).source.columns("train", seed=1)
  _check_rendered(dataset, "train", cols, rows)
  if len(rows) >= 100:  # every template is drawn.
    assert set(cols["template_idx"]) == set(range(10))
  for split in ("validation", "test"):
    rows = tasks.load_examples(dataset, split, data_dir)
    if split not in tasks.get(tasks.eval_task(dataset, 0)).splits:
      assert not rows, (dataset, split)  # declared exactly where there is a dev tail
      continue
    for i, template in enumerate(examples.get_templates(dataset)):
      cols = tasks.get(tasks.eval_task(dataset, i)).source.columns(split)
      _check_rendered(dataset, split, cols, rows)
      if spec.classification and template.is_classification:
        _check_scoring(dataset, i, split, rows)


@pytest.mark.realdata
@pytest.mark.parametrize("dataset", ["anli", "mnli"])
def test_source_tasks_are_their_part_of_the_dataset_task(real_registration, dataset):
  data_dir = real_registration
  try:
    examples.resolved_splits(dataset, data_dir)
  except examples.DataNotPreparedError:
    pytest.skip(f"{dataset} is not in the shared samples")
  whole = tasks.get(tasks.train_task(dataset)).source.columns("train", seed=2)
  rows_of = {i: k for k, i in enumerate(whole["example_id"])}
  seen = []
  for task, source in tasks.train_members(dataset):
    assert source and task == tasks.train_task(dataset, source)
    part = tasks.get(task).source.columns("train", seed=2)
    assert part["inputs"], task
    assert tasks.get(task).source.num_input_examples("train") == examples.num_input_examples(
      dataset, "train", data_dir, source
    )
    for j, example_id in enumerate(part["example_id"]):  # same ids, same template, same text
      k = rows_of[example_id]
      assert (part["inputs"][j], part["targets"][j], part["template_idx"][j]) == (
        whole["inputs"][k],
        whole["targets"][k],
        whole["template_idx"][k],
      )
    seen += part["example_id"]
  assert sorted(seen) == sorted(whole["example_id"])  # the sources partition the whole
  if dataset == "mnli":  # two members over the same examples, with ids of their own.
    one, two = (
      tasks.load_examples(dataset, "train", data_dir, s) for s in ("matched", "mismatched")
    )
    assert [r["premise"] for r in one] == [r["premise"] for r in two]
    assert one[0]["example_id"] == 0 and two[0]["example_id"] == len(one)


def test_unknown_source_is_a_clear_error():
  with pytest.raises(ValueError, match="has no source 'r4'.*'r1', 'r2', 'r3'"):
    examples.read_specs("anli", "train", source="r4")


def test_the_ablation_knobs_reach_register_from_gin_through_the_data_options(default_registration):
  import gin

  from flan import train as train_lib
  from flan.training import options

  train_lib.configurable_train()  # what `python -m flan.train` registers before parsing
  with gin.unlock_config():
    gin.parse_config(
      "DataOptions.num_templates = 3\n"
      "DataOptions.template_mode = 'dataset_name'\n"
      "DataOptions.train_clusters = ['nli', 'sentiment']"
    )
  try:
    data = gin.get_configurable(options.DataOptions)("flan_rte_train", {"inputs": 8, "targets": 4})
    config = tasks.register(vocabulary=None, **data.registration())
  finally:
    gin.clear_config()
  assert (config.num_templates, config.template_mode) == (3, "dataset_name")
  assert config.train_clusters == ("nli", "sentiment")
  assert tasks.current_config() == config


@pytest.mark.realdata
def test_shared_splits_no_task_reads_still_preprocess_and_render(data_dir):
  """E.g. snli/anli `validation`: FLAN does not evaluate them, but the schema is the same."""
  checked = collections.Counter()
  for spec in D.DATASETS:
    fn = flan_preprocessors.get(spec.name)
    for source in spec.sources:
      builder = examples.builder(source.tfds_name, data_dir)
      read = {source.train_split, *source.eval_splits}
      for split, info in builder.info.splits.items():
        if split in read:
          continue
        one = splits_lib.ReadSpec(source.tfds_name, split, 0, info.num_examples)
        for raw in examples.read_examples(one, data_dir):
          fields = fn(raw)
          if fields is None:
            continue
          for i in range(len(examples.get_templates(spec.name))):
            inputs, targets = tasks.render_example(spec.name, fields, i)
            assert inputs.strip() and targets.strip(), (spec.name, split, i)
          checked[spec.name] += 1
  assert {"snli", "anli", "aeslc", "samsum", "wmt16_deen"} <= set(checked), checked
