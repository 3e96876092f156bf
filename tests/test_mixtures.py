"""The registered mixtures: membership (pure, from flan.data.clusters) and rates."""

import pytest
import seqio
import tensorflow_datasets as tfds

from flan.data import clusters as C
from flan.data import datasets as D
from flan.data import examples, mixtures, tasks

MOCK_N = 10


def _dataset_of(task_name):
  name = task_name[len("flan_"):]
  for suffix in ("_train",):
    if name.endswith(suffix):
      return name[:-len(suffix)]
  return name.rsplit("_t", 1)[0]


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
  assert len(mix.tasks) == len(C.holdout(cluster).train_datasets)


@pytest.mark.parametrize("cluster", C.CLUSTERS)
def test_holdout_eval_mixture_holds_every_template_of_the_heldout_cluster(cluster):
  mix = seqio.get_mixture_or_task(mixtures.holdout_eval(cluster))
  names = {t.name for t in mix.tasks}
  expected = {tasks.eval_task(d, i) for d in C.members(cluster)
              for i in range(len(examples.get_templates(d)))}
  assert names == expected


def test_all_train_holds_the_62_training_tasks():
  mix = seqio.get_mixture_or_task(mixtures.ALL_TRAIN)
  assert sorted(t.name for t in mix.tasks) == sorted(tasks.train_task(d.name)
                                                     for d in D.DATASETS)


def test_definitions_are_a_pure_function_of_the_tables():
  a = mixtures.definitions()
  assert a == mixtures.definitions()
  assert len(a) == 2 * len(C.CLUSTERS) + 1
  restricted = mixtures.definitions(train_clusters=["sentiment", "nli"])
  assert {d for _, d in restricted[mixtures.holdout_train("misc")]} == set(
      C.members("sentiment") + C.members("nli"))
  assert restricted[mixtures.holdout_train("paraphrase")] == tuple(
      (tasks.train_task(d), d) for d in C.members("sentiment"))


def test_train_clusters_registers_smaller_mixtures(default_registration):
  tasks.register(train_clusters=["sentiment"])
  mix = seqio.get_mixture_or_task(mixtures.holdout_train("nli"))
  assert sorted(t.name for t in mix.tasks) == sorted(
      tasks.train_task(d) for d in C.members("sentiment"))
  # Holding out sentiment with only sentiment allowed leaves nothing to train on.
  with pytest.raises(ValueError, match="Unknown FLAN task or mixture"):
    tasks.get(mixtures.holdout_train("sentiment"))


def test_rate_formula():
  assert mixtures.train_rate(117) == 117.0
  assert mixtures.train_rate(30_000) == 3000.0
  assert mixtures.train_rate(10_000, mixing_cap=None) == 10_000.0
  assert mixtures.train_rate(2500, temperature=2.0) == pytest.approx(50.0)
  assert mixtures.train_rate(9000, mixing_cap=3000, temperature=3.0) == pytest.approx(
      3000 ** (1 / 3))


def test_mock_rates_use_the_mocked_sizes_and_the_knobs(default_registration):
  tasks.register(train_clusters=["nli", "sentiment"])  # fewer builders to size.
  with tfds.testing.mock_data(num_examples=MOCK_N):
    rates = mixtures.rates(mixtures.holdout_train("commonsense"))
    assert rates["flan_rte_train"] == MOCK_N - 1  # a 1-example dev tail is held back.
    assert rates["flan_sst2_train"] == MOCK_N
    assert rates["flan_anli_train"] == 3 * MOCK_N  # three sources.
    tasks.register(mixing_cap=20, temperature=2.0, train_clusters=["nli", "sentiment"])
    rates = mixtures.rates(mixtures.holdout_train("commonsense"))
    assert rates["flan_anli_train"] == pytest.approx(20 ** 0.5)
    assert rates["flan_rte_train"] == pytest.approx(9 ** 0.5)
    eval_rates = mixtures.rates(mixtures.holdout_eval("nli"))
    assert eval_rates["flan_mnli_t0"] == 2 * MOCK_N  # matched + mismatched, uncapped.


def test_rates_of_a_task_is_an_error():
  with pytest.raises(ValueError, match="is a task"):
    mixtures.rates("flan_rte_train")


@pytest.mark.realdata
def test_real_rates_are_the_capped_clamped_train_sizes(data_dir, default_registration):
  tasks.register(data_dir=data_dir)
  mix = seqio.get_mixture_or_task(mixtures.ALL_TRAIN)
  checked = {}
  for spec in D.DATASETS:
    try:  # sizes straight from TFDS metadata, independent of flan.data.examples.
      sizes = {s.tfds_name: {k: v.num_examples for k, v in
                             tfds.builder(s.tfds_name, data_dir=data_dir).info.splits.items()}
               for s in spec.sources}
    except Exception:  # pylint: disable=broad-except
      continue
    if not all(sizes.values()):
      continue  # not in the shared samples.
    n = D.resolve_splits(spec, sizes).num_train_examples
    task = seqio.get_mixture_or_task(tasks.train_task(spec.name))
    assert mix.get_rate(task) == min(n, 3000), spec.name
    checked[spec.name] = mix.get_rate(task)
  assert len(checked) >= 38
  # Spot values: 10% tails of small splits, several sources, and the 3k cap.
  assert checked["rte"] == 117  # 129 - 12
  assert checked["arc"] == 585 + 1035  # (650 - 65) + (1149 - 114)
  assert checked["multirc"] == 2055  # 2255 - 200
  assert checked["anli"] == 467 + 467 + 559
  assert checked["mnli"] == 467


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
