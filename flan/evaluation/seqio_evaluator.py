"""seqio's own Evaluator on FLAN's eval mixtures, with our model's predictions and scores.

t5x evaluates by handing `seqio.evaluation.Evaluator` a `predict_fn` (token ids per example)
and a `score_fn` (the log-likelihood of each target) over the Evaluator's enumerated model
datasets; the tasks' `metric_fns` / `score_metric_fns` do the rest. `model_fns` builds that
pair over a `ModelRunner` (the batched, sharded calls `flan.evaluation.holdout` uses), so a
t5x user can score `flan_holdout_<cluster>_eval` the way they score their own mixtures, and
get the numbers `flan.evaluation` reports (tests/test_seqio_evaluator.py checks they agree).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import seqio

from flan import paths
from flan.evaluation import inference


def _unpadded(row: np.ndarray) -> list[int]:
  """A right-padded token row without its padding (EOS kept)."""
  ids = np.asarray(row).tolist()
  end = len(ids)
  while end and ids[end - 1] == 0:
    end -= 1
  return ids[:end]


def model_fns(
  runner: inference.ModelRunner,
  params: Any,
  lengths: Mapping[str, int],
  decode_length: int | None = None,
) -> tuple[Callable, Callable]:
  """`(predict_fn, score_fn)` as seqio's Evaluator calls them.

  Each takes the Evaluator's enumerated dataset of `(index, model features)` and returns
  `[(index, tokens)]` (tokens right-padded to `decode_length`, cut after EOS) or
  `[(index, score)]` (the sum of the target's token log-probs).
  """
  decode_length = int(decode_length or lengths["targets"])

  def predict_fn(ds) -> list[tuple[int, list[int]]]:
    rows = list(ds.as_numpy_iterator())
    inputs = [_unpadded(f["encoder_input_tokens"]) for _, f in rows]
    tokens = runner.predict(params, inputs, lengths["inputs"], decode_length)
    return [(int(i), t + [0] * (decode_length - len(t))) for (i, _), t in zip(rows, tokens)]

  def score_fn(ds) -> list[tuple[int, float]]:
    rows = list(ds.as_numpy_iterator())
    inputs = [_unpadded(f["encoder_input_tokens"]) for _, f in rows]
    targets = [_unpadded(f["decoder_target_tokens"]) for _, f in rows]
    scores = runner.score(params, inputs, targets, (lengths["inputs"], lengths["targets"]))
    return [(int(i), float(s)) for (i, _), s in zip(rows, scores)]

  return predict_fn, score_fn


def _plain(metrics: Mapping[str, Any]) -> dict[str, float]:
  return {k: float(getattr(v, "value", v)) for k, v in metrics.items()}


def evaluate(
  runner: inference.ModelRunner,
  params: Any,
  mixture_or_task: str,
  lengths: Mapping[str, int],
  *,
  splits: Sequence[str] = ("validation", "test"),
  num_examples: int | None = None,
  output_dir: str | None = None,
  step: int | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
  """Runs `seqio.evaluation.Evaluator` on every split; returns `{split: {task: metrics}}`.

  With `output_dir`, seqio's own loggers write `<output_dir>/<split>/` (TensorBoard events
  and JSON metrics and inferences, as t5x's infer-eval writes them) and the returned dict
  goes to `<output_dir>/results.json`.
  """
  predict_fn, score_fn = model_fns(runner, params, lengths)
  out = {}
  for split in splits:
    log_dir = str(paths.path(output_dir) / split) if output_dir else None
    evaluator = seqio.evaluation.Evaluator(
      mixture_or_task,
      seqio.EncDecFeatureConverter(pack=False),
      eval_split=split,
      sequence_length=dict(lengths),
      num_examples=num_examples,
      logger_cls=(seqio.TensorBoardLogger, seqio.JSONLogger) if log_dir else (),
      log_dir=log_dir,
    )
    if not evaluator.eval_tasks:
      logging.info("seqio Evaluator: no task of %s has a %r split.", mixture_or_task, split)
      out[split] = {}
      continue
    future, _ = evaluator.evaluate(
      compute_metrics=True, step=step, predict_fn=predict_fn, score_fn=score_fn
    )
    out[split] = {task: _plain(m) for task, m in future.result().items()}
    logging.info(
      "seqio Evaluator on %s (%s): %d tasks evaluated.", mixture_or_task, split, len(out[split])
    )
  if output_dir:
    paths.path(output_dir).mkdir(parents=True, exist_ok=True)
    (paths.path(output_dir) / "results.json").write_text(json.dumps(out, indent=1, sort_keys=True))
  return out
