"""The packer: seqio's EncDecFeatureConverter contract, nothing lost, dense, and loss-neutral."""

import collections

import numpy as np
import pytest

from flan.data import packing

LENGTHS = {"inputs": 1024, "targets": 256}


def long_tailed(n: int, seed: int = 0, vocab: int = 32000):
  """Long-tailed lengths like FLAN's: inputs lognormal(150, 1.0), targets lognormal(20, 1.2)."""
  rng = np.random.default_rng(seed)
  li = np.clip(rng.lognormal(np.log(150), 1.0, n).astype(int), 1, 4096)
  lt = np.clip(rng.lognormal(np.log(20), 1.2, n).astype(int), 1, 1024)

  def seqs(lens):
    return [np.append(rng.integers(3, vocab, int(k) - 1), 1).astype(np.int32) for k in lens]

  return seqs(li), seqs(lt)


def small_examples(n: int, seed: int = 0, max_in: int = 12, max_tg: int = 6):
  rng = np.random.default_rng(seed)
  inputs = [
    np.append(rng.integers(2, 50, rng.integers(0, max_in)), 1).astype(np.int32) for _ in range(n)
  ]
  targets = [
    np.append(rng.integers(2, 50, rng.integers(0, max_tg)), 1).astype(np.int32) for _ in range(n)
  ]
  return inputs, targets


def truncated(seq: np.ndarray, length: int) -> np.ndarray:
  return seq if len(seq) <= length else np.append(seq[: length - 1], seq[-1])


def as_multiset(pairs):
  return collections.Counter((tuple(i.tolist()), tuple(t.tolist())) for i, t in pairs)


def check_row_contract(f):
  """Asserts the per-row invariants of seqio's packed encoder-decoder batches."""
  for side, tok_key in (("encoder", "encoder_input_tokens"), ("decoder", "decoder_target_tokens")):
    seg, pos, tok = f[f"{side}_segment_ids"], f[f"{side}_positions"], f[tok_key]
    for r in range(seg.shape[0]):
      s = seg[r]
      real = np.flatnonzero(s)
      # Real tokens are a prefix; padding (segment 0) carries token 0 and position 0.
      assert np.array_equal(real, np.arange(len(real)))
      assert not tok[r][s == 0].any() and not pos[r][s == 0].any()
      # Segments are contiguous and numbered 1..k in order: they never interleave or cross.
      assert np.all(np.diff(s[real]) >= 0)
      assert np.array_equal(np.unique(s[real]), np.arange(1, s.max() + 1))
      # Positions restart at 0 at each segment start and count up by one.
      starts = np.concatenate([[True], s[real][1:] != s[real][:-1]])
      idx = np.arange(len(real))
      expected = idx - np.maximum.accumulate(np.where(starts, idx, 0))
      assert np.array_equal(pos[r][real], expected)
  dec, dec_in = f["decoder_target_tokens"], f["decoder_input_tokens"]
  dseg, dpos = f["decoder_segment_ids"], f["decoder_positions"]
  shifted = np.concatenate([np.zeros_like(dec[:, :1]), dec[:, :-1]], axis=1)
  expected_in = np.where((dpos == 0) | (dseg == 0), 0, shifted)
  assert np.array_equal(dec_in, expected_in)
  assert np.array_equal(f["decoder_loss_weights"], (dseg > 0).astype(np.int32))
  # Encoder and decoder hold the same segments in every row.
  assert np.array_equal(f["encoder_segment_ids"].max(1), dseg.max(1))
  for v in f.values():
    assert v.dtype == np.int32


@pytest.mark.parametrize("strategy", packing.STRATEGIES)
def test_every_example_appears_exactly_once(strategy):
  inputs, targets = small_examples(500, seed=1)
  inputs += inputs[:20]  # Duplicated examples must come back twice, not once.
  targets += targets[:20]
  out = packing.pack(inputs, targets, {"inputs": 32, "targets": 16}, strategy=strategy)
  got = packing.unpack(out.features)
  assert as_multiset(got) == as_multiset(zip(inputs, targets))
  assert out.examples_per_row.sum() == len(inputs) == len(got)
  check_row_contract(out.features)


def test_long_tailed_rows_keep_every_token_and_the_contract():
  inputs, targets = long_tailed(1500, seed=3)
  out = packing.pack(inputs, targets, LENGTHS)
  check_row_contract(out.features)
  expected = [(truncated(i, 1024), truncated(t, 256)) for i, t in zip(inputs, targets)]
  assert as_multiset(packing.unpack(out.features)) == as_multiset(expected)


def test_too_long_examples_keep_eos_last_and_are_counted():
  inputs = [
    np.arange(2, 12, dtype=np.int32),
    np.array([5, 6, 1], np.int32),
    np.append(np.arange(2, 30), 1).astype(np.int32),
  ]
  targets = [
    np.array([7, 1], np.int32),
    np.append(np.arange(2, 20), 1).astype(np.int32),
    np.array([9, 1], np.int32),
  ]
  out = packing.pack(inputs, targets, {"inputs": 8, "targets": 4})
  got = as_multiset(packing.unpack(out.features))
  assert got == as_multiset(
    [
      (np.arange(2, 10), np.array([7, 1])),  # No EOS at the end: a plain cut.
      (np.array([5, 6, 1]), np.array([2, 3, 4, 1])),  # EOS kept after the cut.
      (np.array([2, 3, 4, 5, 6, 7, 8, 1]), np.array([9, 1])),
    ]
  )
  assert out.truncated_per_row.sum() == 3


def test_empty_examples_are_dropped_and_counted_not_packed():
  inputs = [np.array([4, 1], np.int32), np.zeros([0], np.int32), np.array([5, 1], np.int32)]
  targets = [np.array([6, 1], np.int32), np.array([7, 1], np.int32), np.zeros([0], np.int32)]
  out = packing.pack(inputs, targets, {"inputs": 8, "targets": 8})
  assert out.num_empty == 2
  assert out.example_row.tolist() == [0, -1, -1]
  assert as_multiset(packing.unpack(out.features)) == as_multiset([(inputs[0], targets[0])])


def test_a_window_of_only_empty_examples_gives_no_rows():
  empty = np.zeros([0], np.int32)
  for pack in (True, False):
    out = packing.pack(
      [empty, np.array([3, 1], np.int32)],
      [np.array([4, 1], np.int32), empty],
      {"inputs": 8, "targets": 4},
      pack=pack,
    )
    assert out.num_rows == 0 and out.num_empty == 2
    assert out.features["encoder_input_tokens"].shape == (0, 8)
  assert packing.pack([], [], {"inputs": 8, "targets": 4}).num_rows == 0


def test_zero_token_inside_an_example_does_not_move_segment_boundaries():
  # seqio measures lengths with count_nonzero and so drops the EOS here.
  inputs = [np.array([5, 0, 6, 7, 1], np.int32), np.array([8, 1], np.int32)]
  targets = [np.array([3, 1], np.int32), np.array([4, 0, 1], np.int32)]
  out = packing.pack(inputs, targets, {"inputs": 8, "targets": 8}, strategy="first_fit")
  f = out.features
  assert f["encoder_input_tokens"][0].tolist() == [5, 0, 6, 7, 1, 8, 1, 0]
  assert f["encoder_segment_ids"][0].tolist() == [1, 1, 1, 1, 1, 2, 2, 0]
  assert f["decoder_input_tokens"][0].tolist() == [0, 3, 0, 4, 0, 0, 0, 0]
  assert f["decoder_loss_weights"][0].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]


def test_unpacked_mode_pads_one_example_per_row():
  inputs, targets = small_examples(40, seed=2)
  out = packing.pack(inputs, targets, {"inputs": 16, "targets": 8}, pack=False)
  f = out.features
  assert set(f) == set(packing.UNPACKED_KEYS)
  assert f["encoder_input_tokens"].shape == (40, 16) and out.examples_per_row.tolist() == [1] * 40
  for r, (i, t) in enumerate(zip(inputs, targets)):  # Rows keep the arrival order.
    assert f["encoder_input_tokens"][r, : len(i)].tolist() == i.tolist()
    assert f["decoder_target_tokens"][r, : len(t)].tolist() == t.tolist()
    assert f["decoder_input_tokens"][r, : len(t)].tolist() == [0] + t[:-1].tolist()
    assert f["decoder_loss_weights"][r].sum() == len(t)


def test_long_tailed_packing_is_at_least_85_percent_dense():
  inputs, targets = long_tailed(4096, seed=0)
  rows = real = 0
  for s in range(0, 4096, 1024):
    out = packing.pack(inputs[s : s + 1024], targets[s : s + 1024], LENGTHS)
    fr = packing.non_padding_fraction(out.features)
    rows += out.num_rows
    real += fr["overall"] * out.num_rows
  assert real / rows >= 0.85, real / rows


def next_fit_rows(in_lens, tg_lens, li, lt):
  """seqio's windowed next-fit (one open row), for comparison."""
  rows, ci, ct, open_ = 0, 0, 0, False
  for a, b in zip(np.minimum(in_lens, li), np.minimum(tg_lens, lt)):
    if open_ and (ci + a > li or ct + b > lt):
      rows, ci, ct = rows + 1, 0, 0
    ci, ct, open_ = ci + a, ct + b, True
  return rows + 1


def test_needs_fewer_rows_than_seqio_next_fit_on_the_same_window():
  inputs, targets = long_tailed(1024, seed=5)
  out = packing.pack(inputs, targets, LENGTHS)
  reference = next_fit_rows([len(x) for x in inputs], [len(x) for x in targets], 1024, 256)
  assert out.num_rows < 0.85 * reference


def test_packing_is_deterministic():
  inputs, targets = long_tailed(800, seed=7)
  a = packing.pack(inputs, targets, LENGTHS).features
  b = packing.pack(list(inputs), list(targets), LENGTHS).features
  assert all(np.array_equal(a[k], b[k]) for k in packing.PACKED_KEYS)


def test_single_row_matches_seqio_enc_dec_feature_converter():
  seqio = pytest.importorskip("seqio")
  tf = pytest.importorskip("tensorflow")
  inputs = [
    np.array([5, 6, 1], np.int32),
    np.array([7, 8, 9, 1], np.int32),
    np.array([3, 1], np.int32),
  ]
  targets = [
    np.array([10, 1], np.int32),
    np.array([11, 12, 1], np.int32),
    np.array([13, 14, 15, 1], np.int32),
  ]
  ds = tf.data.Dataset.from_generator(
    lambda: iter([{"inputs": i, "targets": t} for i, t in zip(inputs, targets)]),
    output_signature={
      "inputs": tf.TensorSpec([None], tf.int32),
      "targets": tf.TensorSpec([None], tf.int32),
    },
  )
  lengths = {"inputs": 12, "targets": 12}
  ref = next(seqio.EncDecFeatureConverter(pack=True)(ds, lengths).as_numpy_iterator())
  ours = packing.pack(inputs, targets, lengths, strategy="first_fit").features
  assert set(ref) == set(ours)
  for k in ours:
    assert ours[k][0].tolist() == ref[k].tolist(), k


# --- issue 6: packing does not change the loss ------------------------------------------------


def _model_or_skip():
  from flan.model import encoder_decoder as model_lib
  from flan.model import network

  return model_lib, network


def test_packed_loss_equals_sum_of_unpacked_per_example_losses():
  model_lib, network = _model_or_skip()
  import jax

  config = network.T5Config(
    vocab_size=64,
    emb_dim=32,
    num_heads=2,
    num_encoder_layers=2,
    num_decoder_layers=2,
    head_dim=16,
    mlp_dim=64,
    dropout_rate=0.0,
    dtype="float32",
  )
  model = model_lib.EncoderDecoderModel(config)
  inputs, targets = small_examples(12, seed=11, max_in=10, max_tg=6)
  inputs = [np.minimum(x, 63) for x in inputs]
  targets = [np.minimum(x, 63) for x in targets]
  lengths = {"inputs": 40, "targets": 20}
  packed = packing.pack(inputs, targets, lengths).features
  assert packed["encoder_input_tokens"].shape[0] < len(inputs)  # Really packed.
  unpacked = packing.pack(inputs, targets, lengths, pack=False).features
  shapes = {k: v.shape for k, v in packed.items()}
  params = jax.jit(lambda rng: model.init(rng, shapes))(jax.random.PRNGKey(0))
  loss_fn = jax.jit(model.loss_fn)  # dropout_rng=None: deterministic, dropout off.
  loss_packed, m_packed = loss_fn(params, packed, None)
  per_example = [
    float(loss_fn(params, {k: v[r : r + 1] for k, v in unpacked.items()}, None)[0])
    for r in range(len(inputs))
  ]  # Each example alone in its batch.
  assert float(loss_packed) > 0
  np.testing.assert_allclose(float(loss_packed), sum(per_example), rtol=1e-5, atol=1e-5)
  assert int(m_packed["num_tokens"]) == sum(map(len, targets))
  assert int(m_packed["num_examples"]) == len(inputs)
