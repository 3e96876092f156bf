"""Few-shot prompts: k exemplars from the train split, rendered with the eval template.

FLAN evaluates k-shot by prefixing each evaluation input with k training examples of the
same task, rendered with the same template and joined by separators; exemplars that would
push the prompt past the input length are dropped (the paper keeps 64 of its 1,024
tokens for separators; here the exact token count decides). The format follows FLAN v2's
few-shot pattern without its LaMDA dialog markup: exemplar input, a blank line, exemplar
target, two blank lines, the next exemplar, ..., then the evaluation input.

Exemplar choice is a pure function of (seed, dataset, template, example_id), so the
tuned model and the zero-shot baseline see the same prompts, run after run.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from flan.data import examples as examples_lib


@dataclasses.dataclass(frozen=True)
class FewShotFormat:
  """How exemplars are laid out.

  Attributes:
    x_y_delimiter: between an exemplar's input and its target.
    example_separator: between two exemplars, and before the evaluation input.
  """

  x_y_delimiter: str = "\n\n"
  example_separator: str = "\n\n\n"


DEFAULT_FORMAT = FewShotFormat()


def sample_exemplars(
  pool_size: int, k: int, *, seed: int, dataset: str, template_idx: int, example_id: int
) -> list[int]:
  """Indices of `k` distinct exemplars from a train pool of `pool_size` examples.

  Deterministic in its arguments; fewer than `k` when the pool is smaller.
  """
  if k < 0:
    raise ValueError(f"The number of shots must be >= 0, got {k}.")
  k = min(k, pool_size)
  if k == 0:
    return []
  key = np.random.SeedSequence(
    [int(seed), zlib.crc32(dataset.encode()), int(template_idx), int(example_id)]
  )
  return [int(i) for i in np.random.default_rng(key).choice(pool_size, size=k, replace=False)]


def join(
  inputs: str, exemplars: Sequence[tuple[str, str]], fmt: FewShotFormat = DEFAULT_FORMAT
) -> str:
  """The prompt: exemplars (input, target) in order, then the evaluation input."""
  parts = [f"{x}{fmt.x_y_delimiter}{y}" for x, y in exemplars] + [inputs]
  return fmt.example_separator.join(parts)


def prune_to_fit(
  inputs: str,
  exemplars: Sequence[tuple[str, str]],
  count_tokens: Callable[[str], int],
  max_tokens: int,
  fmt: FewShotFormat = DEFAULT_FORMAT,
) -> tuple[str, int]:
  """Keeps the longest prefix of `exemplars` whose prompt fits in `max_tokens`.

  Per-exemplar token counts give a first estimate; the joined prompt is then counted
  exactly (tokenizers do not add up piecewise) and exemplars dropped until it fits. When
  even the bare input is too long, no exemplar is kept and the input is returned alone
  (the tokenizer's truncation handles it).

  Returns:
    (prompt, number of exemplars kept).
  """
  budget = max_tokens - count_tokens(inputs)
  keep = 0
  for x, y in exemplars:
    cost = count_tokens(f"{x}{fmt.x_y_delimiter}{y}{fmt.example_separator}")
    if cost > budget:
      break
    budget -= cost
    keep += 1
  while keep > 0:
    prompt = join(inputs, exemplars[:keep], fmt)
    if count_tokens(prompt) <= max_tokens:
      return prompt, keep
    keep -= 1
  return inputs, 0


def few_shot_inputs(
  dataset: str,
  fields: Mapping[str, Any],
  template_idx: int,
  inputs: str,
  train_examples: Sequence[Mapping[str, Any]],
  num_shots: int,
  *,
  seed: int,
  count_tokens: Callable[[str], int],
  max_tokens: int,
  mode: str = "instructions",
  fmt: FewShotFormat = DEFAULT_FORMAT,
) -> tuple[str, int]:
  """The k-shot prompt of one evaluation example.

  Args:
    dataset: the dataset name.
    fields: the evaluation example (its `example_id` keys the exemplar draw).
    template_idx: the template, used for the exemplars too.
    inputs: the example's rendered inputs.
    train_examples: the dataset's train split (`flan.data.examples.load_examples`).
    num_shots: k; 0 returns `inputs` unchanged.
    seed: exemplar-draw seed.
    count_tokens: text -> number of tokens (the evaluation vocabulary).
    max_tokens: the input budget (feature length minus the EOS).
    mode: template mode, as for the evaluation input.
    fmt: separators.

  Returns:
    (prompt, number of exemplars kept after pruning).
  """
  if num_shots == 0 or not train_examples:
    return inputs, 0
  picked = sample_exemplars(
    len(train_examples),
    num_shots,
    seed=seed,
    dataset=dataset,
    template_idx=template_idx,
    example_id=fields["example_id"],
  )
  exemplars = [
    examples_lib.render_example(dataset, train_examples[i], template_idx, mode) for i in picked
  ]
  return prune_to_fit(inputs, exemplars, count_tokens, max_tokens, fmt)
