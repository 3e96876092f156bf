"""A fake model and synthetic classification examples for evaluation tests (no TFDS, no T5).

`FakeModel.score_batch` is a fixed, jittable function of input and target tokens (so batched
and one-at-a-time scores can be compared exactly) and `predict_batch` echoes the input.
"""

import jax.numpy as jnp
import seqio
from jax.sharding import PartitionSpec as P

CB_OPTIONS = ["yes", "no", "maybe"]


def CharVocab():
  """Characters as ids past PAD/EOS/UNK: seqio's byte vocabulary (the test texts are ASCII)."""
  return seqio.ByteVocabulary()


class FakeModel:
  """score: a fixed function of input and target tokens; predict: echoes the input."""

  config = (("name", "fake"), ("layers", 1))  # what a baseline-cache key reads

  def param_logical_specs(self):
    return {"w": P()}

  def score_batch(self, params, batch):
    tgt, enc = batch["decoder_target_tokens"], batch["encoder_input_tokens"]
    w = batch["decoder_loss_weights"]
    per_token = jnp.sin(tgt * params["w"] + enc[:, :1] + jnp.arange(tgt.shape[1]))
    return jnp.sum(per_token * w, axis=-1)  # [B]

  def predict_batch(self, params, batch, *, max_decode_length, num_beams=1, alpha=0.6):
    enc = batch["encoder_input_tokens"]
    out = jnp.zeros((enc.shape[0], max_decode_length), jnp.int32)
    n = min(max_decode_length, enc.shape[1])
    return out.at[:, :n].set(enc[:, :n])


def cb_examples(n, offset=0):
  """`n` cb-like examples (premise, hypothesis, 3 options), ids from `offset`."""
  return [
    {
      "premise": f"premise number {i}",
      "hypothesis": f"claim {i % 7}",
      "options": CB_OPTIONS,
      "answer": CB_OPTIONS[i % 3],
      "example_id": i,
    }
    for i in range(offset, offset + n)
  ]
