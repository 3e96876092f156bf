"""The 12 task clusters of the FLAN paper and its leave-one-cluster-out rules.

Membership lives in `flan.data.datasets.DATASETS` (each row names its cluster); this module holds
the cluster list and which clusters leave training together with a held-out one. Every
split is a pure function of these two tables.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping

from flan.data import datasets as datasets_lib

# In the order of the paper's Figure 3.
CLUSTERS: tuple[str, ...] = (
  "nli",
  "commonsense",
  "sentiment",
  "paraphrase",
  "closed_book_qa",
  "struct_to_text",
  "translation",
  "reading_comprehension",
  "reading_comprehension_with_commonsense",
  "coreference",
  "misc",
  "summarization",
)

# Holding out the key also removes these clusters from training (FLAN's
# generate_inter_cluster_splits): paraphrase and NLI exclude each other, and reading
# comprehension with commonsense overlaps both of its parents.
ALSO_EXCLUDED: Mapping[str, frozenset[str]] = {
  "nli": frozenset({"paraphrase"}),
  "paraphrase": frozenset({"nli"}),
  "reading_comprehension": frozenset({"reading_comprehension_with_commonsense"}),
  "commonsense": frozenset({"reading_comprehension_with_commonsense"}),
  "reading_comprehension_with_commonsense": frozenset({"reading_comprehension", "commonsense"}),
}


def check_cluster(name: str) -> str:
  """Returns `name` if it is a cluster; else raises naming the close matches."""
  if name in CLUSTERS:
    return name
  close = difflib.get_close_matches(name, CLUSTERS, n=3, cutoff=0.4)
  hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
  raise ValueError(f"Unknown cluster {name!r}.{hint} The 12 clusters are: {', '.join(CLUSTERS)}.")


def members(cluster: str) -> tuple[str, ...]:
  """Dataset names in `cluster`, in table order."""
  check_cluster(cluster)
  return tuple(d.name for d in datasets_lib.DATASETS if d.cluster == cluster)


@dataclasses.dataclass(frozen=True)
class Split:
  """A leave-one-cluster-out split.

  Attributes:
    heldout: the evaluated cluster.
    train_clusters: clusters whose datasets train.
    excluded_clusters: clusters removed from training (the held-out one and its overlaps).
    train_datasets / eval_datasets: dataset names.
  """

  heldout: str
  train_clusters: tuple[str, ...]
  excluded_clusters: tuple[str, ...]
  train_datasets: tuple[str, ...]
  eval_datasets: tuple[str, ...]


def holdout(cluster: str, train_clusters: Iterable[str] | None = None) -> Split:
  """The split that evaluates `cluster` zero-shot.

  Args:
    cluster: the held-out cluster.
    train_clusters: restrict training to these clusters (the paper's "number of clusters"
      ablation); clusters that the hold-out rules exclude are still removed.
  """
  check_cluster(cluster)
  excluded = {cluster} | ALSO_EXCLUDED.get(cluster, frozenset())
  allowed = CLUSTERS if train_clusters is None else tuple(check_cluster(c) for c in train_clusters)
  train = tuple(c for c in CLUSTERS if c in allowed and c not in excluded)
  return Split(
    heldout=cluster,
    train_clusters=train,
    excluded_clusters=tuple(c for c in CLUSTERS if c in excluded),
    train_datasets=tuple(n for c in train for n in members(c)),
    eval_datasets=members(cluster),
  )
