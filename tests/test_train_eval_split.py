"""t5x's train-eval: `seqio.get_dataset(<train mixture>, dataset_split="validation")` reads the
dev tails of the members that have one (rendered as training renders them) and skips the rest.
"""

import pytest
import seqio

from flan.data import examples, tasks


@pytest.fixture
def misc_only(data_dir):
  """The NLI hold-out mixture trained on the misc cluster only, over the shared samples."""
  tasks.register(data_dir=data_dir, missing_datasets="skip", train_clusters=("misc",))
  yield data_dir
  tasks.register()


@pytest.mark.realdata
def test_a_train_mixture_answers_the_validation_split_with_batches(misc_only):
  mixture = seqio.get_mixture_or_task("flan_holdout_nli_train")
  with_dev = [t.name for t in mixture.tasks if "validation" in t.splits]
  assert "flan_trec_train" in with_dev
  for task in mixture.tasks:  # declared exactly where the dev tail has examples
    dataset = task.source.dataset
    tail = examples.num_input_examples(dataset, "validation", misc_only, task.source.source)
    assert ("validation" in task.splits) == (tail > 0), task.name
  ds = seqio.get_dataset(
    "flan_holdout_nli_train",
    {"inputs": 64, "targets": 16},
    seqio.EncDecFeatureConverter(pack=False),
    dataset_split="validation",
    shuffle=False,
    seed=0,
    batch_size=4,
  )
  batch = next(iter(ds.as_numpy_iterator()))
  assert batch["encoder_input_tokens"].shape == (4, 64)
  assert (batch["decoder_target_tokens"] > 0).any()


@pytest.mark.realdata
def test_the_validation_rows_are_the_dev_tail_rendered_with_training_templates(misc_only):
  source = tasks.get("flan_trec_train").source
  dev = source.columns("validation", seed=0)
  rows = examples.load_examples("trec", "validation", misc_only)
  assert (
    len(dev["inputs"])
    == len(rows)
    == examples.num_input_examples("trec", "validation", misc_only)
    > 0
  )
  chosen = examples.template_indices(
    0, "trec", [r["example_id"] for r in rows], tasks.current_config().num_templates
  ).tolist()
  assert dev["template_idx"] == chosen
  assert dev["inputs"][0] == examples.render_example("trec", rows[0], chosen[0])[0]
