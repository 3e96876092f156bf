"""The seqio registry names of FLAN's tasks, one convention for tasks and mixtures.

flan_<dataset>_train (training, all templates; flan_<dataset>_<source>_train: one source's
part), flan_<dataset>_t<i> (template i, eval splits), flan_<dataset>_t<i>_scoring (rank
classification). `flan.data.tasks` registers
tasks under these names and `flan.data.mixtures` groups them, without importing each other
for it.
"""

from __future__ import annotations

from flan.data import datasets as datasets_lib

PREFIX = "flan_"


def train_task(dataset: str, source: str = "") -> str:
  """`flan_<dataset>_train`, or with `source`, that source's own `flan_<dataset>_<source>_train`."""
  return f"{PREFIX}{dataset}_{source}_train" if source else f"{PREFIX}{dataset}_train"


def train_members(dataset: str) -> tuple[tuple[str, str], ...]:
  """The training tasks that stand for `dataset` in a mixture: ((task name, source), ...).

  One per training source, as FLAN's code registers one task per TFDS config with a rate of
  its own (anli: r1, r2, r3); a single-source dataset is its `flan_<d>_train` (source "").
  """
  spec = datasets_lib.get(dataset)
  sources = [s.name for s in spec.sources if s.train_split is not None]
  if len(spec.sources) == 1:
    return tuple((train_task(dataset), "") for _ in sources)
  return tuple((train_task(dataset, name), name) for name in sources)


def eval_task(dataset: str, template_idx: int) -> str:
  return f"{PREFIX}{dataset}_t{template_idx}"


def scoring_task(dataset: str, template_idx: int) -> str:
  return f"{PREFIX}{dataset}_t{template_idx}_scoring"
