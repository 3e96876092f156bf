"""The baseline's evaluation results, stored once and reused by later runs.

The baseline, the initial checkpoint evaluated beside the tuned model (INITIAL_CHECKPOINT_PATH
in `flan.train`, BASELINE_CHECKPOINT_PATH in `flan.evaluate`), is the same from run to run:
evaluating it again costs as much as evaluating the tuned model and gives the same numbers.
Its results (what `flan.evaluation.holdout.evaluate_model` returns: the results dict and the
prediction records) are written once per checkpoint and evaluation configuration, and a
later run with the same ones reads them back instead: a hit neither restores nor evaluates
the baseline.

They live beside the token cache (`flan.data.token_cache`), under the same CACHE_DIR:

  <CACHE_DIR>/baseline_eval/<cluster>-<hash>.json   {"format", "key": the key parts in full,
                                                     "results", "records"}

The key (`key_parts`) holds everything the results depend on: the checkpoint (the directory
`flan.training.checkpoints.locate` resolves and a fingerprint of its contents, cheap to take:
`SavedWeights.fingerprint`), the model config, the evaluation options (`EvalOptions`), the
cluster and the evaluated prompts of each dataset, template and split (their count and a
digest of their tokens and targets), the data dir, the vocabulary (a hash of its model), the
templates, and the source code of flan's data, model and evaluation
packages (a change of rendering, scoring or metrics is a miss). Any change gives another
hash, so a stale entry is never read; it is left in place (delete old files to reclaim the
space). Files are written atomically (`flan.paths.write_atomic`) by process 0; every process
of a multi-host run takes the same hit-or-miss decision (all must find the entry), since the
evaluation is a collective computation.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from flan import paths
from flan.data import examples as examples_lib
from flan.data import vocabularies

FORMAT_VERSION = 1
SUBDIR = "baseline_eval"

Evaluation = tuple[dict[str, Any], list[dict[str, Any]]]  # (results, prediction records)


def _digest(text: str) -> str:
  return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
  """A hash of the source of flan's data, model and evaluation packages."""
  digest = hashlib.sha256()
  root = pathlib.Path(__file__).resolve().parent.parent
  for package in ("data", "model", "evaluation"):
    for path in sorted((root / package).rglob("*.py")):
      digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
  return digest.hexdigest()[:16]


def _plain(value: Any) -> Any:
  """`value` as JSON-able data (dataclasses as dicts, mappings with sorted string keys)."""
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    value = dataclasses.asdict(value)
  if isinstance(value, Mapping):
    return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


def _prompts_key(d: Mapping[str, Any]) -> Any:
  """A dataset's evaluated prompts, per template and split: their count and a digest of
  their tokens and targets (what the data, the template and the tokenization made of them),
  or "missing"."""
  if not d.get("templates"):
    return "missing"
  key = []
  for t in d["templates"]:
    per_split = {}
    for split, prompts in sorted(t.splits.items()):
      digest = hashlib.sha256()
      for p in prompts:
        digest.update(np.asarray(p.inputs, np.int32).tobytes() + b"\0")
        digest.update(repr(p.targets).encode() + b"\0")
        for o in p.options or ():
          digest.update(np.asarray(o, np.int32).tobytes() + b"\1")
      per_split[split] = [len(prompts), digest.hexdigest()[:16]]
    key.append({"kind": t.kind, "splits": per_split})
  few_shot = d.get("train") or ()
  return {"templates": key, "train": len(few_shot)}


def key_parts(
  *,
  checkpoint: Mapping[str, Any],
  model_config: Any,
  cluster: str,
  options: Any,
  data: Mapping[str, Mapping[str, Any]],
  data_dir: str | os.PathLike | None,
  vocabulary: Any,
) -> dict[str, Any]:
  """Everything a baseline's results depend on (the module docstring lists the parts).

  Args:
    checkpoint: the baseline's `SavedWeights.fingerprint()`.
    model_config: the model's `T5Config` (a dataclass).
    cluster: the evaluated cluster.
    options: the `EvalOptions` of the evaluation.
    data: dataset -> {"templates": [`holdout.TemplateData`], "train": ...} or
      {"error": ...}, as the evaluation loaded it (`holdout.load_dataset`).
    data_dir: TFDS data_dir (None: TFDS's default).
    vocabulary: the seqio vocabulary.
  """
  loaded = {name: _prompts_key(d) for name, d in data.items()}
  return _plain(
    {
      "checkpoint": dict(checkpoint),
      "model_config": model_config,
      "cluster": cluster,
      "options": options,
      "prompts": loaded,
      "data_dir": None if data_dir is None else os.fspath(data_dir),
      "vocabulary": vocabularies.ids_fingerprint(vocabulary),
      "templates": {n: _digest(repr(examples_lib.get_templates(n))) for n in data},
      "code": code_fingerprint(),
    }
  )


def _all_processes_agree(flag: bool) -> bool:
  """True iff `flag` holds on every process (the same answer everywhere)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils

  return bool(np.all(multihost_utils.process_allgather(np.int32(flag))))


class BaselineCache:
  """The cached results of one baseline checkpoint under one CACHE_DIR.

  Args:
    cache_dir: CACHE_DIR, the token cache's root (local or gs://).
    checkpoint: the baseline's `SavedWeights.fingerprint()`.
    model_config: the model's `T5Config`.
  """

  def __init__(
    self, cache_dir: str | os.PathLike, checkpoint: Mapping[str, Any], model_config: Any
  ):
    self.root = paths.path(cache_dir) / SUBDIR
    self.checkpoint = dict(checkpoint)
    self.model_config = model_config

  def entry(self, cluster: str, parts: Mapping[str, Any]) -> Any:
    """The file of the entry with these key parts."""
    text = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True)
    return self.root / f"{cluster}-{_digest(text)}.json"

  def _read(self, path: Any, parts: Mapping[str, Any]) -> Evaluation | None:
    if not path.exists():
      return None
    try:
      entry = json.loads(path.read_text())
    except (OSError, ValueError) as e:  # unreadable or damaged: evaluate again, rewrite it
      logging.warning("Ignoring the baseline cache entry %s (%s).", path, e)
      return None
    if entry.get("format") != FORMAT_VERSION or entry.get("key") != parts:
      logging.warning("Ignoring the baseline cache entry %s: its key differs.", path)
      return None
    return entry["results"], entry["records"]

  def reuse_or_evaluate(
    self,
    evaluate: Callable[[], Evaluation],
    *,
    cluster: str,
    options: Any,
    data: Mapping[str, Mapping[str, Any]],
    data_dir: str | os.PathLike | None,
    vocabulary: Any,
  ) -> Evaluation:
    """The baseline's (results, records): read back when cached, else `evaluate()`d and
    written. Both ways return what the file holds (plain JSON data), so a hit equals the
    miss that wrote it. The other arguments are `key_parts`'."""
    parts = key_parts(
      checkpoint=self.checkpoint,
      model_config=self.model_config,
      cluster=cluster,
      options=options,
      data=data,
      data_dir=data_dir,
      vocabulary=vocabulary,
    )
    path = self.entry(cluster, parts)
    cached = self._read(path, parts)
    if _all_processes_agree(cached is not None):
      logging.info(
        "Baseline %s: reusing its results from %s (the same checkpoint and evaluation were "
        "evaluated before); not restoring or evaluating it.",
        self.checkpoint.get("path"),
        path,
      )
      return cached
    results, records = evaluate()
    text = json.dumps(
      {"format": FORMAT_VERSION, "key": parts, "results": results, "records": records}
    )
    if jax.process_index() == 0:
      path.parent.mkdir(parents=True, exist_ok=True)
      paths.write_atomic(path, text)
      logging.info("Baseline results stored in %s for later runs.", path)
    entry = json.loads(text)
    return entry["results"], entry["records"]


def open_cache(
  cache_dir: str | os.PathLike | None, weights: Any, model_config: Any, *, mock_data: bool
) -> BaselineCache | None:
  """A `BaselineCache` of the baseline `weights` (a `SavedWeights`, fingerprinted here)
  under `cache_dir`, or None: no `cache_dir`, or `mock_data` (random examples, never cached)."""
  if cache_dir is None or mock_data:
    return None
  return BaselineCache(cache_dir, weights.fingerprint(), model_config)
