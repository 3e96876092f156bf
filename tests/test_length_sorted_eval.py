"""Evaluation batches of length-sorted examples, each padded to its own bucket (and options
packed into one decoder row per example), give the per-example scores and predictions of
batches padded to the caller's lengths in order, one (example, option) row each."""

import jax
import numpy as np
import pytest

from flan.evaluation import inference
from flan.model import partitioning

CAP_IN, CAP_TGT, DECODE = 64, 16, 6


@pytest.fixture(scope="module")
def tiny():
  model_lib = pytest.importorskip("flan.model.encoder_decoder")
  from flan.model import network

  config = network.T5Config(
    vocab_size=256,
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
  shapes = {
    "encoder_input_tokens": (8, CAP_IN),
    "decoder_input_tokens": (8, CAP_TGT),
    "decoder_target_tokens": (8, CAP_TGT),
    "decoder_loss_weights": (8, CAP_TGT),
  }
  return model, jax.jit(lambda rng: model.init(rng, shapes))(jax.random.PRNGKey(0))


def _examples(n=13, seed=0):
  rng = np.random.default_rng(seed)
  inputs = [
    list(rng.integers(3, 250, size=int(rng.choice([3, 9, 20, 60])))) + [1] for _ in range(n)
  ]
  options = [
    [list(rng.integers(3, 250, size=rng.integers(1, 12))) + [1] for _ in range(rng.integers(1, 6))]
    for _ in range(n)
  ]
  return inputs, options


def _pad(rows, length):
  out = np.zeros((len(rows), length), np.int32)
  for i, r in enumerate(rows):
    out[i, : len(r)] = r
  return out


def test_length_order_is_longest_first_and_stable():
  assert inference.length_order([3, 9, 3, 9, 1]).tolist() == [1, 3, 0, 2, 4]


@pytest.mark.slow
def test_length_sorted_scores_and_predictions_equal_padding_to_the_caps(tiny):
  model, params = tiny
  mesh = partitioning.make_mesh({"data": 4, "model": 1}, devices=jax.devices()[:4])
  runner = inference.ModelRunner(model, mesh, 4)
  placed = runner.place(params)
  inputs, options = _examples()
  # Today's method: every row padded to the caps, in the caller's order.
  flat = [(i, o) for i, opts in enumerate(options) for o in opts]
  enc = _pad([inputs[i] for i, _ in flat], CAP_IN)
  tgt = _pad([o for _, o in flat], CAP_TGT)
  dec_in = np.concatenate([np.zeros((len(flat), 1), np.int32), tgt[:, :-1]], axis=1)
  padded = np.asarray(
    model.score_batch(
      params,
      {
        "encoder_input_tokens": enc,
        "decoder_input_tokens": dec_in,
        "decoder_target_tokens": tgt,
        "decoder_loss_weights": (tgt > 0).astype(np.int32),
      },
    )
  )
  expected = [[] for _ in inputs]
  for (i, _), s in zip(flat, padded.tolist()):
    expected[i].append(s)

  shared = runner.score_options(placed, inputs, options, (CAP_IN, CAP_TGT))
  rows = inference.ModelRunner(model, mesh, 4, share_encoder=False).score_options(
    placed, inputs, options, (CAP_IN, CAP_TGT)
  )
  for got in (shared, rows):
    assert [len(s) for s in got] == [len(o) for o in options]
    for a, b in zip(got, expected):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  # Fewer encoder slots than padding every row to the cap.
  assert runner.stats["encoder_slots"] < 0.8 * runner.stats["score_batches"] * 4 * CAP_IN

  blank = np.zeros((len(inputs), DECODE), np.int32)
  decoded = np.asarray(
    model.predict_batch(
      params,
      {
        "encoder_input_tokens": _pad(inputs, CAP_IN),
        "decoder_input_tokens": blank,
        "decoder_target_tokens": blank,
        "decoder_loss_weights": blank,
      },
      max_decode_length=DECODE,
    )
  ).tolist()
  want = []
  for row in decoded:
    row = row[: row.index(1)] if 1 in row else row
    want.append([t for t in row if t != 0])
  assert runner.predict(placed, inputs, CAP_IN, DECODE) == want
