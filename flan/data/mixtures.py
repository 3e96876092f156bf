"""FLAN's mixtures: leave-one-cluster-out training and evaluation, and everything.

  flan_holdout_<cluster>_train  the training tasks of every dataset outside `cluster` (and
                                outside the clusters its hold-out rules exclude, see
                                `flan.data.clusters`), examples-proportional as FLAN's code
                                (`mixing_rate_3k`): one member per source
                                (`task_names.train_members`: anli is flan_anli_r1_train,
                                _r2_, _r3_),
                                rate = min(n, mixing_cap) ** (1 / temperature), with n the
                                source's own train slice (at most 30,000, before preprocessing).
  flan_holdout_<cluster>_eval   every template's evaluated task of the held-out cluster
                                (`evaluated_tasks`: `flan_<d>_t<i>_scoring` for rank
                                classification, `flan_<d>_t<i>` for generation), each at its
                                uncapped eval size; seqio's Evaluator scores every member.
                                (FLAN's `_eval`
                                mixtures hold its all-template tasks at seqio's
                                `mixing_rate_num_examples`, the uncapped *train* size; ours are
                                read task by task, so a rate only orders them.)
  flan_all_train                every training member of the 62 datasets (within
                                `train_clusters` if given): 67, FLAN's 70 configs less
                                true_case, word_segment and wsc273.

The task lists are pure functions of `flan.data.clusters.holdout`; rates are computed lazily from
TFDS split metadata (no data is read), so registering needs no prepared data.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable

from flan.data import clusters as clusters_lib
from flan.data import datasets as datasets_lib
from flan.data import examples, task_metrics, task_names
from flan.errors import UserError

ALL_TRAIN = "flan_all_train"


def holdout_train(cluster: str) -> str:
  return f"flan_holdout_{cluster}_train"


def holdout_eval(cluster: str) -> str:
  return f"flan_holdout_{cluster}_eval"


def train_rate(num_examples: int, mixing_cap: int | None = 3000, temperature: float = 1.0) -> float:
  """Examples-proportional rate: min(n, cap) ** (1 / temperature)."""
  n = num_examples if mixing_cap is None else min(num_examples, mixing_cap)
  return float(n) ** (1.0 / temperature)


def train_datasets(mixture: str, train_clusters: Iterable[str] | None = None) -> tuple[str, ...]:
  """The datasets whose training tasks a training mixture holds (pure function)."""
  if mixture == ALL_TRAIN:
    allowed = set(clusters_lib.CLUSTERS if train_clusters is None else train_clusters)
    return tuple(d.name for d in datasets_lib.DATASETS if d.cluster in allowed)
  for cluster in clusters_lib.CLUSTERS:
    if mixture == holdout_train(cluster):
      return clusters_lib.holdout(cluster, train_clusters).train_datasets
  raise UserError(f"{mixture!r} is not a FLAN training mixture.")


def evaluated_tasks(dataset: str, flan_templates_dir: str | None = None) -> tuple[str, ...]:
  """Per template of `dataset`, the task that evaluates it: `flan_<d>_t<i>_scoring` where it
  is rank-classified, else `flan_<d>_t<i>` (see `flan.data.task_metrics.kind`); of FLAN's
  templates in the replication mode (`flan_templates_dir`)."""
  templates = examples.get_templates(dataset, flan_templates_dir)
  spec = datasets_lib.get(dataset)
  return tuple(
    task_names.scoring_task(dataset, i)
    if task_metrics.kind(spec, templates, i) == task_metrics.RANK_CLASSIFICATION
    else task_names.eval_task(dataset, i)
    for i in range(len(templates))
  )


def definitions(
  train_clusters: Iterable[str] | None = None, flan_templates_dir: str | None = None
) -> dict[str, tuple[tuple[str, str], ...]]:
  """Every mixture: name -> ((task name, dataset), ...). Pure function of the tables (the
  dataset table, the clusters and the template files).

  Args:
    train_clusters: the number-of-clusters ablation (see `flan.data.clusters.holdout`).
    flan_templates_dir: the replication mode's FLAN templates, which decide the eval
      mixtures' members (None: ours).
  """
  out = {}
  members = lambda datasets: tuple(
    (task, d) for d in datasets for task, _ in task_names.train_members(d)
  )
  for cluster in clusters_lib.CLUSTERS:
    split = clusters_lib.holdout(cluster, train_clusters)
    out[holdout_train(cluster)] = members(split.train_datasets)
    out[holdout_eval(cluster)] = tuple(
      (task, d) for d in split.eval_datasets for task in evaluated_tasks(d, flan_templates_dir)
    )
  out[ALL_TRAIN] = members(train_datasets(ALL_TRAIN, train_clusters))
  return out


def _train_rate(
  dataset: str,
  source: str,
  data_dir: str | None,
  mixing_cap: int | None,
  temperature: float,
  task=None,
) -> float:
  del task  # seqio passes the task; the rate depends on the source's split sizes only.
  n = examples.num_input_examples(dataset, "train", data_dir, source or None)
  return train_rate(n, mixing_cap, temperature)


def _eval_rate(dataset: str, data_dir: str | None, task=None) -> float:
  del task
  return float(examples.num_input_examples(dataset, "test", data_dir))


def prepared(dataset: str, data_dir: str | None) -> bool:
  """Whether every split `dataset` reads is prepared in `data_dir` (metadata only)."""
  try:
    examples.resolved_splits(dataset, data_dir)
  except examples.DataNotPreparedError:
    return False
  return True


def register(config) -> list[str]:
  """Registers every mixture for a `flan.data.tasks.Config`; returns their names.

  With `config.missing_datasets == "skip"`, datasets not prepared in `config.data_dir` are
  left out of every mixture, and a warning lists them.
  """
  import seqio

  keep = lambda d: True
  if config.missing_datasets == "skip":
    missing = sorted(d.name for d in datasets_lib.DATASETS if not prepared(d.name, config.data_dir))
    if missing:
      logging.warning(
        "Leaving %d datasets out of the FLAN mixtures: not prepared in %s: %s",
        len(missing),
        config.data_dir or "TFDS's default data_dir",
        ", ".join(missing),
      )
    keep = lambda d: d not in missing
  source_of = {
    task: source for d in datasets_lib.DATASETS for task, source in task_names.train_members(d.name)
  }
  names = []
  for name, members in definitions(config.train_clusters, config.flan_templates_dir).items():
    members = tuple(m for m in members if keep(m[1]))
    if not members:  # e.g. train_clusters leaves nothing beside the held-out cluster.
      continue
    if name.endswith("_eval"):
      rates = [(task, functools.partial(_eval_rate, d, config.data_dir)) for task, d in members]
    else:
      rates = [
        (
          task,
          functools.partial(
            _train_rate, d, source_of[task], config.data_dir, config.mixing_cap, config.temperature
          ),
        )
        for task, d in members
      ]
    seqio.MixtureRegistry.remove(name)
    seqio.MixtureRegistry.add(name, rates)
    names.append(name)
  return names


def rates(mixture: str) -> dict[str, float]:
  """`{task name: rate}` of a registered FLAN mixture (reads TFDS metadata only)."""
  import seqio

  mix = seqio.get_mixture_or_task(mixture)
  if not hasattr(mix, "get_rate"):
    raise UserError(f"{mixture!r} is a task, not a mixture.")
  return {t.name: float(mix.get_rate(t)) for t in mix.tasks}
