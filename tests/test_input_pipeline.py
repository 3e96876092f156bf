"""The training stream: deterministic mixing, exact resume, disjoint shards, honest stats."""

import collections
import json

import numpy as np
import pytest

from flan.data import input_pipeline, packing

seqio = pytest.importorskip("seqio")
tf = pytest.importorskip("tensorflow")

# Task name -> (number of train examples, mixing rate).
TASKS = {"ip_test_alpha": (600, 5.0), "ip_test_beta": (300, 3.0), "ip_test_gamma": (80, 2.0)}
MIXTURE = "ip_test_mixture"
LENGTHS = {"inputs": 32, "targets": 8}


def _examples(task_idx: int, n: int):
  """Example e of task t: inputs [10 + t, 100 + e, filler..., EOS], so rows identify it."""
  rng = np.random.default_rng(task_idx)
  inputs = [
    np.concatenate(
      [[10 + task_idx, 100 + e], rng.integers(2, 90, rng.integers(0, 20)), [1]]
    ).astype(np.int32)
    for e in range(n)
  ]
  targets = [
    np.append(rng.integers(2, 90, rng.integers(0, 6)), 1).astype(np.int32) for _ in range(n)
  ]
  return inputs, targets


def _register():
  vocab = seqio.PassThroughVocabulary(size=1000, eos_id=1)
  features = {
    "inputs": seqio.Feature(vocab, add_eos=False),
    "targets": seqio.Feature(vocab, add_eos=False),
  }
  for name in [MIXTURE, "ip_test_long", *TASKS]:
    seqio.MixtureRegistry.remove(name)
    seqio.TaskRegistry.remove(name)
  for t, (name, (n, _)) in enumerate(TASKS.items()):
    inputs, targets = _examples(t, n)
    ragged = {"inputs": tf.ragged.constant(inputs), "targets": tf.ragged.constant(targets)}

    def dataset_fn(split, shuffle_files, seed=None, ragged=ragged):
      del split, shuffle_files, seed
      return tf.data.Dataset.from_tensor_slices(ragged)

    seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(dataset_fn, splits=["train"]),
      preprocessors=[],
      output_features=features,
    )
  seqio.MixtureRegistry.add(MIXTURE, [(name, rate) for name, (_, rate) in TASKS.items()])
  long_inputs = [np.append(np.full(50, 7), 1).astype(np.int32)] * 10

  def long_fn(split, shuffle_files, seed=None):
    del split, shuffle_files, seed
    return tf.data.Dataset.from_tensor_slices(
      {"inputs": tf.constant(np.stack(long_inputs)), "targets": tf.constant([[5, 1]] * 10)}
    )

  seqio.TaskRegistry.add(
    "ip_test_long",
    source=seqio.FunctionDataSource(long_fn, ["train"]),
    preprocessors=[],
    output_features=features,
  )


@pytest.fixture(scope="module", autouse=True)
def registered():
  _register()
  yield
  for name in [MIXTURE, "ip_test_long", *TASKS]:
    seqio.MixtureRegistry.remove(name)
    seqio.TaskRegistry.remove(name)


def make(seed=0, batch=8, **kw):
  kw.setdefault("shard_index", 0)
  kw.setdefault("num_shards", 1)
  kw.setdefault("window_size", 64)
  return input_pipeline.make_train_iterator(MIXTURE, LENGTHS, batch, seed, **kw)


def take(it, n):
  return [next(it) for _ in range(n)]


def example_ids(batches):
  """(task, example) of every example in the batches, row by row."""
  out = []
  for b in batches:
    for inputs, _ in packing.unpack(b):
      out.append((int(inputs[0]) - 10, int(inputs[1]) - 100))
  return out


def same(a, b):
  return len(a) == len(b) and all(
    x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
  )


def test_batches_follow_the_packed_contract():
  with make(batch=8) as it:
    b = next(it)
  assert set(b) == set(packing.PACKED_KEYS)
  assert b["encoder_input_tokens"].shape == (8, 32) and b["decoder_target_tokens"].shape == (8, 8)
  assert all(v.dtype == np.int32 for v in b.values())
  assert it.batch_shapes()["decoder_segment_ids"] == (8, 8)
  assert (b["encoder_segment_ids"].max(1) > 1).any()  # Really packed.


def test_same_seed_same_first_100_examples_other_seed_other_order():
  with make(seed=3) as a, make(seed=3) as b, make(seed=4) as c:
    ids_a, ids_b, ids_c = (example_ids(take(x, 12)) for x in (a, b, c))
  assert len(ids_a) >= 100
  assert ids_a[:100] == ids_b[:100]
  assert ids_a[:100] != ids_c[:100]


def test_task_shares_match_rates_over_20000_examples():
  with make(seed=1, batch=500, pack=False, window_size=1000) as it:
    batches = take(it, 40)  # pack=False: one example per row, 20,000 in all.
  counts = collections.Counter(
    int(x) - 10 for b in batches for x in b["encoder_input_tokens"][:, 0]
  )
  total_rate = sum(rate for _, rate in TASKS.values())
  assert sum(counts.values()) == 20000
  for t, (_, rate) in enumerate(TASKS.values()):
    assert abs(counts[t] / 20000 - rate / total_rate) < 0.02, (t, counts)


def test_small_task_cycles_through_reshuffled_epochs():
  with make(seed=2, batch=500, pack=False, window_size=1000) as it:
    batches = take(it, 6)  # 3 whole windows.
    first_window, _ = it._stream.examples(0, np.zeros(3, np.int64))
  ids = [(int(r[0]) - 10, int(r[1]) - 100) for b in batches for r in b["encoder_input_tokens"]]
  n = TASKS["ip_test_gamma"][0]
  counts = collections.Counter(e for t, e in ids if t == 2)
  assert sum(counts.values()) >= 3 * n and set(counts) == set(range(n))
  # Whole epochs without replacement: every example drawn equally often, give or take one.
  assert max(counts.values()) - min(counts.values()) <= 1
  offset = sum(TASKS[name][0] for name in list(TASKS)[:2])
  gamma = [int(g) - offset for g in first_window if g >= offset]
  assert len(gamma) >= 2 * n
  assert sorted(gamma[:n]) == sorted(gamma[n : 2 * n]) == list(range(n))
  assert gamma[:n] != gamma[n : 2 * n]  # Each epoch in a new order.


@pytest.mark.parametrize("skip", [3, 7])
def test_restore_mid_stream_continues_bit_identically(skip):
  with make(seed=5, batch=4) as reference:
    expected = take(reference, skip + 15)
  with make(seed=5, batch=4) as first:
    take(first, skip)
    state = json.loads(json.dumps(first.state()))  # Survives a JSON round trip.
    stats = first.stats
  assert state["row"] > 0, "the test should resume in the middle of a window"
  with make(seed=5, batch=4) as resumed:
    resumed.restore(state)
    assert resumed.stats == stats
    assert same(take(resumed, 15), expected[skip:])


def test_restore_rewinds_a_running_iterator_and_recomputes_missing_counts():
  with make(seed=6, batch=4) as it:
    take(it, 5)
    state = it.state()
    after = take(it, 12)  # The prefetch thread is now well ahead.
    it.restore(state)
    assert same(take(it, 12), after)
    del state["task_counts"]  # An older state without counts: recomputed from the window.
    it.restore(state)
    assert same(take(it, 12), after)


def test_restore_refuses_a_state_from_another_stream():
  with make(seed=7) as it:
    state = it.state()
  with make(seed=8) as other, pytest.raises(ValueError, match="seed"):
    other.restore(state)


def test_one_shards_position_is_refused_by_another_shard():
  with make(seed=0, shard_index=0, num_shards=2) as host0:
    take(host0, 2)
    state = host0.state()
  state["shard_index"] = 1  # "Re-aiming" host 0's position at shard 1 would be silently wrong.
  with make(seed=0, shard_index=1, num_shards=2) as host1:
    with pytest.raises(ValueError, match="position of data shard 0"):
      host1.restore(state)
    host1.restore({**host1.state()})  # Its own state, even before the first batch: fine.


def test_two_shards_read_disjoint_examples():
  seen = []
  for shard in (0, 1):
    with make(
      seed=0, batch=200, pack=False, window_size=400, shard_index=shard, num_shards=2
    ) as it:
      seen.append(set(example_ids(take(it, 10))))
  assert seen[0] and seen[1] and not seen[0] & seen[1]
  # Together they cover everything that was drawn from the small task.
  assert {e for t, e in seen[0] | seen[1] if t == 2} == set(range(TASKS["ip_test_gamma"][0]))


def test_stats_count_examples_truncation_and_density():
  it = input_pipeline.make_train_iterator(
    "ip_test_long", {"inputs": 16, "targets": 4}, 4, 0, shard_index=0, num_shards=1, window_size=16
  )
  with it:
    batches = take(it, 3)
  stats = it.stats
  examples = sum(len(packing.unpack(b)) for b in batches)
  assert stats["examples"] == examples == stats["truncated_examples"]
  for b in batches:  # Cut to 16 with the EOS kept last.
    assert (b["encoder_input_tokens"][:, 15] == 1).all()
  assert stats["non_padding_fraction/encoder"] == 1.0


def test_shards_default_to_the_jax_process():
  with input_pipeline.make_train_iterator(MIXTURE, LENGTHS, 8, 0) as it:
    state = it.state()
  assert (state["shard_index"], state["num_shards"]) == (0, 1)  # One process here.


def test_bad_arguments_fail_with_a_clear_message():
  with pytest.raises(ValueError, match="multiple of the number of data shards"):
    make(batch=7, shard_index=0, num_shards=2)
  with pytest.raises(ValueError, match="No seqio task or mixture named"):
    input_pipeline.make_train_iterator("ip_test_nope", LENGTHS, 8, 0, shard_index=0, num_shards=1)
  with pytest.raises(ValueError, match="'targets'"):
    input_pipeline.make_train_iterator(MIXTURE, {"inputs": 8}, 8, 0, shard_index=0, num_shards=1)


@pytest.mark.realdata
def test_real_flan_tasks_stream_packed_batches(data_dir, vocab_path):
  tasks = pytest.importorskip("flan.data.tasks")
  previous = tasks.current_config()
  tasks.register(data_dir=data_dir, vocabulary=vocab_path)
  try:
    seqio.MixtureRegistry.remove("ip_test_real")
    seqio.MixtureRegistry.add(
      "ip_test_real", [(tasks.train_task("rte"), 2.0), (tasks.train_task("trec"), 1.0)]
    )
    with input_pipeline.make_train_iterator(
      "ip_test_real", {"inputs": 256, "targets": 32}, 8, 0, shard_index=0, num_shards=1
    ) as it:
      batches = take(it, 3)
      stats = it.stats
  finally:
    seqio.MixtureRegistry.remove("ip_test_real")
    tasks.register(
      **{
        k: getattr(previous, k)
        for k in (
          "data_dir",
          "vocabulary",
          "num_templates",
          "template_mode",
          "mixing_cap",
          "temperature",
          "train_clusters",
        )
      }
    )
  assert stats["examples"] > 3 * 8 and stats["non_padding_fraction/overall"] > 0.5
  for b in batches:
    assert set(b) == set(packing.PACKED_KEYS) and b["encoder_input_tokens"].shape == (8, 256)
    for inputs, targets in packing.unpack(b):  # Real SentencePiece tokens, EOS last.
      assert inputs[-1] == 1 and targets[-1] == 1 and (inputs[:-1] > 1).all()
