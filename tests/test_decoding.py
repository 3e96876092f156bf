"""Greedy and beam search: cache decoding vs full passes, exhaustive search, EOS handling."""

import functools
import itertools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flan.model import decoding, hf, network
from flan.model import encoder_decoder as model_lib

FIXTURE = pathlib.Path(__file__).parent / "testdata" / "hf_tiny_t5"
MAX_LEN = 8


@functools.cache
def _jitted(model):
  """`model` with its scoring and decoding jitted, as flan.evaluation.inference runs them."""
  model.score_batch = jax.jit(model.score_batch)
  model.predict_batch_with_scores = jax.jit(
    model.predict_batch_with_scores, static_argnames=("max_decode_length", "num_beams", "alpha")
  )
  return model


def _fixture():
  config, params = hf.params_from_hf(FIXTURE, dtype="float32")
  data = np.load(FIXTURE / "expected_logits.npz")
  return _jitted(model_lib.EncoderDecoderModel(config)), params, data["encoder_input_tokens"]


def _with_eos_for(params, token):
  """Params that emit EOS wherever the fixture would emit `token` (logit columns swapped).

  The fixture's greedy outputs are [36 21 59 ...], [36 21 59 ...], [36 4 59 ...]: swapping
  21 makes rows 0 and 1 stop after two tokens while row 2 runs to the length limit.
  """
  params = jax.tree.map(np.array, params)  # a copy: the cached fixture stays intact
  kernel = params["decoder"]["logits_dense"]["kernel"]
  kernel[:, [token, decoding.EOS_ID]] = kernel[:, [decoding.EOS_ID, token]]
  return params


def _argmax_by_full_passes(model, params, encoder_tokens, length):
  """Reference greedy decoding: one teacher-forced pass over the whole prefix per token."""
  forward = jax.jit(
    lambda p, dec: model.module.apply(
      {"params": p}, encoder_tokens, dec, jnp.ones_like(dec), enable_dropout=False
    )
  )
  rows = encoder_tokens.shape[0]
  out = np.zeros((rows, length), np.int32)
  done = np.zeros(rows, bool)
  for i in range(length):
    inputs = np.concatenate([np.zeros((rows, 1), np.int32), out[:, :-1]], axis=1)
    token = np.asarray(forward(params, inputs))[:, i].argmax(-1)
    out[:, i] = np.where(done, 0, token)
    done |= out[:, i] == decoding.EOS_ID
  return out


def test_greedy_with_cache_equals_repeated_full_forward_argmax():
  model, params, encoder_tokens = _fixture()
  for p in (params, _with_eos_for(params, 21)):
    got = np.asarray(
      model.predict_batch(p, {"encoder_input_tokens": encoder_tokens}, max_decode_length=MAX_LEN)
    )
    want = _argmax_by_full_passes(model, p, encoder_tokens, MAX_LEN)
    np.testing.assert_array_equal(got, want)
  assert (got == decoding.EOS_ID).any(axis=1).tolist() == [True, True, False]


def test_greedy_scores_equal_teacher_forced_scores_and_stop_at_eos():
  model, params, encoder_tokens = _fixture()
  params = _with_eos_for(params, 21)
  tokens, scores = model.predict_batch_with_scores(
    params, {"encoder_input_tokens": encoder_tokens}, max_decode_length=MAX_LEN
  )
  tokens = np.asarray(tokens)
  np.testing.assert_array_equal(tokens[:2, 1:3], [[decoding.EOS_ID, 0]] * 2)
  assert not tokens[:2, 2:].any() and tokens[2].all(), "PAD after EOS, none before"
  weights = (tokens > 0).astype(np.int32)
  inputs = np.concatenate([np.zeros((3, 1), np.int32), tokens[:, :-1]], axis=1)
  teacher = model.score_batch(
    params,
    {
      "encoder_input_tokens": encoder_tokens,
      "decoder_input_tokens": inputs,
      "decoder_target_tokens": tokens,
      "decoder_loss_weights": weights,
    },
  )
  np.testing.assert_allclose(np.asarray(scores), np.asarray(teacher), rtol=1e-5)


def test_predict_batch_compiles_once_for_new_params():
  model, params, encoder_tokens = _fixture()
  batch = {"encoder_input_tokens": encoder_tokens}
  model = model_lib.EncoderDecoderModel(model.config)  # its own methods, unjitted
  predict = jax.jit(functools.partial(model.predict_batch, max_decode_length=MAX_LEN))
  predict(params, batch)
  before = predict._cache_size()
  other = jax.tree.map(lambda x: x * 1.01, params)
  predict(other, batch)
  assert predict._cache_size() == before == 1


def test_scanned_layers_decode_the_same_tokens():
  model, params, encoder_tokens = _fixture()
  scanned = _jitted(
    model_lib.EncoderDecoderModel(
      network.T5Config(**{**model.config.__dict__, "scan_layers": True})
    )
  )
  batch = {"encoder_input_tokens": encoder_tokens}
  np.testing.assert_array_equal(
    np.asarray(
      scanned.predict_batch(
        network.scan_layer_params(params, model.config),
        batch,
        max_decode_length=MAX_LEN,
        num_beams=2,
      )
    ),
    np.asarray(model.predict_batch(params, batch, max_decode_length=MAX_LEN, num_beams=2)),
  )


def test_model_beam_scores_are_brevity_normalised_log_probs():
  model, params, encoder_tokens = _fixture()
  params = _with_eos_for(params, 59)
  tokens, scores = model.predict_batch_with_scores(
    params,
    {"encoder_input_tokens": encoder_tokens},
    max_decode_length=MAX_LEN,
    num_beams=3,
    alpha=0.6,
  )
  tokens = np.asarray(tokens)
  assert tokens.shape == (3, MAX_LEN) and tokens.dtype == np.int32
  inputs = np.concatenate([np.zeros((3, 1), np.int32), tokens[:, :-1]], axis=1)
  weights = (tokens > 0).astype(np.int32)
  log_probs = np.asarray(
    model.score_batch(
      params,
      {
        "encoder_input_tokens": encoder_tokens,
        "decoder_input_tokens": inputs,
        "decoder_target_tokens": tokens,
        "decoder_loss_weights": weights,
      },
    )
  )
  finished = (tokens == decoding.EOS_ID).any(axis=1)
  assert finished.any()
  lengths = weights.sum(axis=1)
  want = np.where(finished, log_probs / ((5.0 + lengths) / 6.0) ** 0.6, log_probs)
  np.testing.assert_allclose(np.asarray(scores), want, rtol=1e-4)


# A Markov "model": logits depend on the step and the previous token only.
VOCAB, LENGTH = 4, 4


def _markov(seed, forbid_eos=False):
  table = np.random.default_rng(seed).normal(size=(LENGTH, VOCAB, VOCAB)).astype(np.float32) * 2
  if forbid_eos:
    table[..., decoding.EOS_ID] = -1e9
  table = jnp.asarray(table)

  def tokens_to_logits(tokens, cache):
    logits = table[cache["index"], tokens[:, 0]]
    return logits, {"index": cache["index"] + 1, "rows": cache["rows"]}

  def cache(rows):
    return {"index": jnp.zeros((), jnp.int32), "rows": jnp.zeros((rows, 1))}

  return table, tokens_to_logits, cache


def _exhaustive_best(table, alpha):
  log_probs = np.asarray(jax.nn.log_softmax(table, axis=-1))
  best = (-np.inf, None)
  for seq in itertools.product(range(VOCAB), repeat=LENGTH):
    if decoding.PAD_ID in seq:
      continue  # PAD is a legal token in general; excluded here to keep EOS-cut prefixes unique
    ended = [i for i, t in enumerate(seq) if t == decoding.EOS_ID]
    if not ended:
      continue
    n = ended[0] + 1
    prev, lp = 0, 0.0
    for i, t in enumerate(seq[:n]):
      lp += log_probs[i, prev, t]
      prev = t
    score = lp / ((5.0 + n) / 6.0) ** alpha
    if score > best[0] + 1e-6:
      best = (score, list(seq[:n]) + [0] * (LENGTH - n))
  return best


@pytest.mark.parametrize("seed,alpha", [(0, 0.6), (1, 0.0), (2, 2.0)])
def test_wide_beam_finds_the_exhaustive_best_finished_sequence(seed, alpha):
  table, _, cache = _markov(seed)
  table = table.at[..., decoding.PAD_ID].set(-1e9)  # see _exhaustive_best
  beams = 32  # more than the 3**3 live prefixes: the search is exhaustive
  seqs, scores = decoding.beam_search(
    lambda t, c: (table[c["index"], t[:, 0]], {**c, "index": c["index"] + 1}),
    cache(beams),
    batch_size=1,
    num_beams=beams,
    max_decode_length=LENGTH,
    alpha=alpha,
  )
  want_score, want_seq = _exhaustive_best(table, alpha)
  np.testing.assert_allclose(float(scores[0, 0]), want_score, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(seqs[0, 0]), want_seq)
  assert np.all(np.diff(np.asarray(scores[0])) <= 1e-6), "beams come best first"


def test_single_beam_equals_greedy_when_no_beam_can_finish_early():
  _, step, cache = _markov(3, forbid_eos=True)
  greedy, greedy_scores = decoding.greedy_search(
    step, cache(2), batch_size=2, max_decode_length=LENGTH
  )
  beam, beam_scores = decoding.beam_search(
    step, cache(2), batch_size=2, num_beams=1, max_decode_length=LENGTH, alpha=0.6
  )
  np.testing.assert_array_equal(np.asarray(beam[:, 0]), np.asarray(greedy))
  np.testing.assert_allclose(np.asarray(beam_scores[:, 0]), np.asarray(greedy_scores), rtol=1e-6)


def test_greedy_stops_each_row_at_eos_and_pads():
  table = np.full((LENGTH, VOCAB, VOCAB), -5.0, np.float32)
  table[0, 0, 2] = 5.0  # step 0: token 2
  table[1, 2, decoding.EOS_ID] = 5.0  # then EOS
  table[2:, :, 3] = 5.0  # would continue with 3s if not stopped
  table = jnp.asarray(table)
  seqs, _ = decoding.greedy_search(
    lambda t, c: (table[c["index"], t[:, 0]], {"index": c["index"] + 1}),
    {"index": jnp.zeros((), jnp.int32)},
    batch_size=1,
    max_decode_length=LENGTH,
  )
  np.testing.assert_array_equal(np.asarray(seqs[0]), [2, decoding.EOS_ID, 0, 0])


def test_brevity_penalty_is_t5x_formula():
  np.testing.assert_allclose(float(decoding.brevity_penalty(0.6, 7)), (12 / 6) ** 0.6)
  assert float(decoding.brevity_penalty(0.0, 30)) == 1.0
