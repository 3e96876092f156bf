"""Few-shot prompts: deterministic exemplar draws, layout, and pruning to the input length."""

import pytest

from flan.evaluation import few_shot


def _words(text: str) -> int:
  return len(text.split())


def test_exemplar_draw_is_deterministic_distinct_and_depends_on_the_key():
  kw = dict(seed=0, dataset="rte", template_idx=3, example_id=7)
  first = few_shot.sample_exemplars(100, 5, **kw)
  assert first == few_shot.sample_exemplars(100, 5, **kw)
  assert len(set(first)) == 5 and all(0 <= i < 100 for i in first)
  assert first != few_shot.sample_exemplars(100, 5, **{**kw, "example_id": 8})
  assert first != few_shot.sample_exemplars(100, 5, **{**kw, "seed": 1})


def test_exemplar_draw_is_capped_by_the_pool_and_zero_shot_draws_nothing():
  kw = dict(seed=0, dataset="rte", template_idx=0, example_id=0)
  assert sorted(few_shot.sample_exemplars(3, 5, **kw)) == [0, 1, 2]
  assert few_shot.sample_exemplars(100, 0, **kw) == []
  with pytest.raises(ValueError, match=">= 0"):
    few_shot.sample_exemplars(100, -1, **kw)


def test_join_puts_exemplars_before_the_input_with_the_separators():
  prompt = few_shot.join("Q3", [("Q1", "A1"), ("Q2", "A2")])
  assert prompt == "Q1\n\nA1\n\n\nQ2\n\nA2\n\n\nQ3"


def test_pruning_keeps_the_longest_prefix_that_fits():
  exemplars = [("one two three", "yes"), ("four five", "no"), ("six seven eight", "yes")]
  # Input: 2 words; exemplars cost 4, 3, 4 words.
  prompt, kept = few_shot.prune_to_fit("eval input", exemplars, _words, max_tokens=9)
  assert kept == 2
  assert prompt == few_shot.join("eval input", exemplars[:2])
  assert _words(prompt) <= 9
  assert few_shot.prune_to_fit("eval input", exemplars, _words, max_tokens=100)[1] == 3


def test_pruning_drops_every_exemplar_when_the_input_alone_is_too_long():
  prompt, kept = few_shot.prune_to_fit("a b c d e", [("x", "y")], _words, max_tokens=3)
  assert (prompt, kept) == ("a b c d e", 0)


def test_pruning_checks_the_exact_count_of_the_joined_prompt():
  # A tokenizer whose separators cost more together than apart (pieces do not add up):
  # the estimate keeps both exemplars, the exact count of the joined prompt keeps one.
  def count(text):
    return _words(text) + text.count("\n\n\n") ** 2

  exemplars = [("a", "b"), ("c", "d")]
  prompt, kept = few_shot.prune_to_fit("q", exemplars, count, max_tokens=7)
  assert count(few_shot.join("q", exemplars)) == 9
  assert kept == 1 and prompt == few_shot.join("q", exemplars[:1])


def test_few_shot_inputs_renders_train_exemplars_with_the_same_template(monkeypatch):
  calls = []

  def fake_render(dataset, fields, template_idx, mode="instructions"):
    calls.append((dataset, template_idx, mode))
    return f"in {fields['example_id']}", f"out {fields['example_id']}"

  monkeypatch.setattr(few_shot.examples_lib, "render_example", fake_render)
  train = [{"example_id": i} for i in range(10)]
  prompt, kept = few_shot.few_shot_inputs(
    "rte", {"example_id": 4}, 2, "eval", train, 3, seed=0, count_tokens=_words, max_tokens=1000
  )
  assert kept == 3 and prompt.endswith("\n\n\neval")
  assert calls == [("rte", 2, "instructions")] * 3
  picked = few_shot.sample_exemplars(10, 3, seed=0, dataset="rte", template_idx=2, example_id=4)
  assert prompt.startswith(f"in {picked[0]}\n\nout {picked[0]}")
  assert few_shot.few_shot_inputs(
    "rte", {"example_id": 4}, 2, "eval", train, 0, seed=0, count_tokens=_words, max_tokens=1000
  ) == ("eval", 0)
