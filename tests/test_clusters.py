"""Leave-one-cluster-out splits (pure functions of the two tables)."""

import pytest

from flan.data import clusters as C
from flan.data import datasets as D


def test_twelve_clusters_partition_the_62_datasets():
  assert len(C.CLUSTERS) == 12
  members = [n for c in C.CLUSTERS for n in C.members(c)]
  assert sorted(members) == sorted(d.name for d in D.DATASETS)


@pytest.mark.parametrize("cluster", C.CLUSTERS)
def test_holdout_trains_on_every_other_allowed_cluster(cluster):
  split = C.holdout(cluster)
  excluded = {cluster} | C.ALSO_EXCLUDED.get(cluster, frozenset())
  assert set(split.excluded_clusters) == excluded
  assert set(split.train_clusters) == set(C.CLUSTERS) - excluded
  train_clusters = {D.get(n).cluster for n in split.train_datasets}
  assert train_clusters == set(C.CLUSTERS) - excluded
  assert set(split.eval_datasets) == set(C.members(cluster))
  assert not set(split.train_datasets) & set(split.eval_datasets)


def test_overlap_rules_of_the_paper():
  assert "paraphrase" in C.holdout("nli").excluded_clusters
  assert "nli" in C.holdout("paraphrase").excluded_clusters
  rcc = "reading_comprehension_with_commonsense"
  assert rcc in C.holdout("commonsense").excluded_clusters
  assert rcc in C.holdout("reading_comprehension").excluded_clusters
  assert {"reading_comprehension", "commonsense"} <= set(C.holdout(rcc).excluded_clusters)
  assert C.holdout("translation").excluded_clusters == ("translation",)


def test_train_clusters_ablation_restricts_training_but_keeps_exclusions():
  split = C.holdout("nli", train_clusters=["paraphrase", "sentiment", "summarization"])
  assert split.train_clusters == ("sentiment", "summarization")  # paraphrase still excluded.
  assert {D.get(n).cluster for n in split.train_datasets} == {"sentiment", "summarization"}


def test_unknown_cluster_names_the_close_match():
  with pytest.raises(ValueError, match="Did you mean 'sentiment'"):
    C.holdout("sentimen")
  with pytest.raises(ValueError, match="Unknown cluster"):
    C.holdout("nli", train_clusters=["nope_nope"])
