"""The seqio registry names of FLAN's tasks, one convention for tasks and mixtures.

flan_<dataset>_train (training, all templates), flan_<dataset>_t<i> (template i, eval
splits), flan_<dataset>_t<i>_scoring (rank classification). `flan.data.tasks` registers
tasks under these names and `flan.data.mixtures` groups them, without importing each other
for it.
"""

from __future__ import annotations

PREFIX = "flan_"


def train_task(dataset: str) -> str:
  return f"{PREFIX}{dataset}_train"


def eval_task(dataset: str, template_idx: int) -> str:
  return f"{PREFIX}{dataset}_t{template_idx}"


def scoring_task(dataset: str, template_idx: int) -> str:
  return f"{PREFIX}{dataset}_t{template_idx}_scoring"
