"""The registered mixtures: membership (pure, from flan.data.clusters) and rates."""

import pytest
import seqio
import tensorflow_datasets as tfds

from flan.data import clusters as C
from flan.data import datasets as D
from flan.data import examples, mixtures, tasks
from flan.data import splits as splits_lib

MOCK_N = 10


_DATASET_OF_TRAIN_TASK = {
  task: d.name for d in D.DATASETS for task, _ in tasks.train_members(d.name)
}


def _dataset_of(task_name):
  if task_name in _DATASET_OF_TRAIN_TASK:
    return _DATASET_OF_TRAIN_TASK[task_name]
  return task_name[len("flan_") :].rsplit("_t", 1)[0]


def _members(datasets):
  return [task for d in datasets for task, _ in tasks.train_members(d)]


@pytest.fixture
def default_registration():
  yield
  tasks.register()


@pytest.mark.parametrize("cluster", C.CLUSTERS)
def test_holdout_train_mixture_excludes_the_heldout_cluster_and_keeps_all_others(cluster):
  mix = seqio.get_mixture_or_task(mixtures.holdout_train(cluster))
  got = {D.get(_dataset_of(t.name)).cluster for t in mix.tasks}
  excluded = {cluster} | C.ALSO_EXCLUDED.get(cluster, frozenset())
  assert not got & excluded
  assert got == set(C.CLUSTERS) - excluded
  assert all(t.name.endswith("_train") for t in mix.tasks)
  assert sorted(t.name for t in mix.tasks) == sorted(_members(C.holdout(cluster).train_datasets))


@pytest.mark.parametrize("cluster", C.CLUSTERS)
def test_holdout_eval_mixture_holds_every_template_of_the_heldout_cluster(cluster):
  mix = seqio.get_mixture_or_task(mixtures.holdout_eval(cluster))
  names = {t.name for t in mix.tasks}
  # One member per template: its scoring task where it is rank-classified, else its eval task.
  expected = {
    tasks.scoring_task(d, i)
    if template.is_classification and D.get(d).classification
    else tasks.eval_task(d, i)
    for d in C.members(cluster)
    for i, template in enumerate(examples.get_templates(d))
  }
  assert names == expected
  assert any(n.endswith("_scoring") for n in names) or cluster in ("struct_to_text", "translation")


def test_all_train_holds_one_member_per_source_of_the_62_datasets():
  mix = seqio.get_mixture_or_task(mixtures.ALL_TRAIN)
  names = sorted(t.name for t in mix.tasks)
  assert names == sorted(_members(d.name for d in D.DATASETS))
  assert len(names) == 67  # FLAN's 70 configs less true_case, word_segment and wsc273
  assert {
    "flan_anli_r1_train",
    "flan_anli_r2_train",
    "flan_anli_r3_train",
    "flan_mnli_matched_train",
    "flan_mnli_mismatched_train",
    "flan_squad_v1_train",
    "flan_squad_v2_train",
    "flan_arc_challenge_train",
    "flan_arc_easy_train",
    "flan_rte_train",
  } <= set(names)
  assert "flan_anli_train" not in names


def test_definitions_are_a_pure_function_of_the_tables():
  a = mixtures.definitions()
  assert a == mixtures.definitions()
  assert len(a) == 2 * len(C.CLUSTERS) + 1
  restricted = mixtures.definitions(train_clusters=["sentiment", "nli"])
  assert {d for _, d in restricted[mixtures.holdout_train("misc")]} == set(
    C.members("sentiment") + C.members("nli")
  )
  assert restricted[mixtures.holdout_train("paraphrase")] == tuple(
    (tasks.train_task(d), d) for d in C.members("sentiment")
  )
  assert restricted[mixtures.holdout_train("commonsense")][:3] == (
    ("flan_anli_r1_train", "anli"),
    ("flan_anli_r2_train", "anli"),
    ("flan_anli_r3_train", "anli"),
  )


def test_train_clusters_registers_smaller_mixtures(default_registration):
  tasks.register(train_clusters=["sentiment"])
  mix = seqio.get_mixture_or_task(mixtures.holdout_train("nli"))
  assert sorted(t.name for t in mix.tasks) == sorted(_members(C.members("sentiment")))
  # Holding out sentiment with only sentiment allowed leaves nothing to train on.
  with pytest.raises(ValueError, match="Unknown seqio task or mixture"):
    tasks.get(mixtures.holdout_train("sentiment"))


def test_rate_formula():
  assert mixtures.train_rate(117) == 117.0
  assert mixtures.train_rate(30_000) == 3000.0
  assert mixtures.train_rate(10_000, mixing_cap=None) == 10_000.0
  assert mixtures.train_rate(2500, temperature=2.0) == pytest.approx(50.0)
  assert mixtures.train_rate(9000, mixing_cap=3000, temperature=3.0) == pytest.approx(
    3000 ** (1 / 3)
  )


def test_mock_rates_use_the_mocked_sizes_and_the_knobs(default_registration):
  tasks.register(train_clusters=["nli", "sentiment"])  # fewer builders to size.
  with tfds.testing.mock_data(num_examples=MOCK_N):
    rates = mixtures.rates(mixtures.holdout_train("commonsense"))
    assert rates["flan_rte_train"] == MOCK_N - 1  # a 1-example dev tail is held back,
    assert rates["flan_sst2_train"] == MOCK_N - 1  # also beside FLAN's train[:30000].
    for source in ("r1", "r2", "r3"):  # one member and one rate per source; anli's dev
      assert rates[f"flan_anli_{source}_train"] == MOCK_N  # is validation[:200].
    assert rates["flan_mnli_matched_train"] == rates["flan_mnli_mismatched_train"] == MOCK_N - 1
    tasks.register(mixing_cap=5, temperature=2.0, train_clusters=["nli", "sentiment"])
    rates = mixtures.rates(mixtures.holdout_train("commonsense"))
    assert rates["flan_anli_r2_train"] == pytest.approx(5**0.5)
    assert rates["flan_rte_train"] == pytest.approx(5**0.5)
    eval_rates = mixtures.rates(mixtures.holdout_eval("nli"))
    assert eval_rates["flan_mnli_t0_scoring"] == 2 * MOCK_N  # matched + mismatched, uncapped.


def test_rates_of_a_task_is_an_error():
  with pytest.raises(ValueError, match="is a task"):
    mixtures.rates("flan_rte_train")


def test_holdout_rates_on_flans_full_sizes_are_flans_rule(monkeypatch, default_registration):
  """Every hold-out training mixture's rates on the full TFDS split sizes (metadata only)
  equal FLAN's mixing_rate_3k on FLAN's own train slices: min(slice size, 3000) per config."""
  from flan_sizes import FLAN_TRAIN, FULL_SIZES, flan_slice_size

  def sizes(dataset, tfds_name, splits, data_dir=None):
    return {s: FULL_SIZES[tfds_name][s] for s in splits}

  monkeypatch.setattr(examples, "split_sizes", sizes)
  examples.clear_cache()
  try:
    tasks.register(data_dir="/flan-full-sizes")  # its own cache key; nothing is read.
    want = {}
    for (dataset, source), split in FLAN_TRAIN.items():
      spec = D.get(dataset)
      src = next(s for s in spec.sources if s.name == source)
      n = FULL_SIZES[src.tfds_name][src.train_split]
      want[
        tasks.train_task(dataset, source) if len(spec.sources) > 1 else tasks.train_task(dataset)
      ] = float(min(flan_slice_size(split, n), 3000))
    for cluster in C.CLUSTERS:
      rates = mixtures.rates(mixtures.holdout_train(cluster))
      assert rates == {t: want[t] for t in rates}, cluster
    all_rates = mixtures.rates(mixtures.ALL_TRAIN)
    assert all_rates == want
    # By hand: every ANLI, SQuAD and MNLI source trains at its own 3,000.
    for task in (
      "flan_anli_r1_train",
      "flan_anli_r2_train",
      "flan_anli_r3_train",
      "flan_squad_v1_train",
      "flan_squad_v2_train",
      "flan_mnli_matched_train",
      "flan_mnli_mismatched_train",
    ):
      assert all_rates[task] == 3000.0, task
    assert all_rates["flan_cb_train"] == 200.0  # train[:-50] of 250
    assert all_rates["flan_arc_challenge_train"] == 919.0  # train[:-200] of 1,119
    assert all_rates["flan_story_cloze_train"] == 1671.0  # validation[:-200] of 1,871
  finally:
    examples.clear_cache()


@pytest.mark.realdata
def test_real_rates_are_the_capped_clamped_train_sizes(data_dir, default_registration):
  tasks.register(data_dir=data_dir)
  mix = seqio.get_mixture_or_task(mixtures.ALL_TRAIN)
  checked = {}
  for spec in D.DATASETS:
    try:  # sizes straight from TFDS metadata, independent of flan.data.examples.
      sizes = {
        s.tfds_name: {
          k: v.num_examples
          for k, v in tfds.builder(s.tfds_name, data_dir=data_dir).info.splits.items()
        }
        for s in spec.sources
      }
    except Exception:  # pylint: disable=broad-except
      continue
    if not all(sizes.values()):
      continue  # not in the shared samples.
    resolved = splits_lib.resolve_splits(spec, sizes)
    for task, source in tasks.train_members(spec.name):
      n = resolved.num_train_examples_of(source)
      rate = mix.get_rate(seqio.get_mixture_or_task(task))
      assert rate == min(n, 3000), task
      checked[task] = rate
  assert len(checked) >= 42
  # Spot values: 10% tails of splits under twice FLAN's tail, FLAN's tail, one rate a source.
  assert checked["flan_rte_train"] == 117  # 129 - 12
  assert checked["flan_arc_challenge_train"] == 650 - 200
  assert checked["flan_arc_easy_train"] == 1149 - 200
  assert checked["flan_multirc_train"] == 2055  # 2255 - 200
  assert (
    checked["flan_anli_r1_train"],
    checked["flan_anli_r2_train"],
    checked["flan_anli_r3_train"],
  ) == (467, 467, 559)
  assert checked["flan_mnli_matched_train"] == checked["flan_mnli_mismatched_train"] == 267
  assert checked["flan_qnli_train"] == 733  # 933 - FLAN's train[-200:] validation


@pytest.mark.realdata
def test_missing_datasets_skip_leaves_out_only_unprepared_datasets(data_dir):
  from flan.data import tasks

  try:
    tasks.register(data_dir=data_dir, missing_datasets="skip")
    members = {t.name for t in tasks.get("flan_holdout_nli_train").tasks}
    assert "flan_trec_train" in members and "flan_copa_train" in members  # prepared
    assert "flan_ag_news_subset_train" not in members  # not in ../shared
    assert "flan_sentiment140_train" not in members
    rates = mixtures.rates("flan_holdout_nli_train")
    assert all(r > 0 for r in rates.values())
  finally:
    tasks.register()


def test_missing_datasets_rejects_unknown_policy():
  from flan.data import tasks

  with pytest.raises(ValueError, match="missing_datasets must be 'error' or 'skip'"):
    tasks.register(missing_datasets="ignore")
