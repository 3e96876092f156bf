"""Every preprocessor against the field contract, for all 62 datasets.

On `tfds.testing.mock_data` (each builder's real TFDS 4.9.10 schema, random values) and on
every example of every split of `../shared/data/tfds`: emitted keys are declared, lists and
strings have the right types, classification answers are among the options, and every
template renders with no placeholder left. Per-cluster files hold the hand-checked cases.
"""

import preprocessor_contract as contract
import pytest

from flan.data import datasets, preprocessors

ALL = [d.name for d in datasets.DATASETS]


@pytest.mark.parametrize("dataset", ALL)
def test_mock_examples_fit_the_contract_and_render_every_template(dataset):
  assert contract.check_mock(dataset, num_examples=8) > 0


@pytest.mark.realdata
@pytest.mark.parametrize("dataset", ALL)
def test_every_real_example_fits_the_contract(dataset, data_dir):
  if not contract.available_sources(dataset, data_dir):
    pytest.skip(f"no prepared data for {dataset} in {data_dir}")
  counts = contract.check_real(dataset, data_dir)
  # Real samples are clean: a split may lose at most 1% of its examples, or a single one
  # (SQuAD v2's 3-example train sample has one unanswerable question, which is dropped).
  assert counts and all(total - kept <= max(1, total // 100) for total, kept in counts.values()), (
    counts
  )


def _emptied(value, strings: bool):
  """`value` with every list emptied (and, if `strings`, every string blanked)."""
  if isinstance(value, dict):
    return {k: _emptied(v, strings) for k, v in value.items()}
  if isinstance(value, list):
    return []
  return "" if strings and isinstance(value, str) else value


@pytest.mark.parametrize("dataset", ALL)
def test_examples_with_empty_lists_or_blank_strings_are_kept_valid_or_dropped(dataset):
  pp = preprocessors.get(dataset)
  for example in contract.mock_examples(dataset, num_examples=2):
    no_lists = pp(_emptied(example, strings=False))
    if no_lists is not None:
      contract.check_fields(dataset, no_lists)
    assert pp(_emptied(example, strings=True)) is None
