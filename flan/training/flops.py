"""Model FLOPs of a T5 encoder-decoder step, counted per weight and per token.

Counted honestly for an encoder-decoder (a "6 x params x tokens" rule would be wrong twice
over: encoder and decoder weights see different token counts, and cross-attention K/V run
over the inputs):

* encoder layers (self-attention q/k/v/o + gated MLP): 2 x weights x input tokens;
* decoder layers (self-attention q/k/v/o, cross-attention q/o, gated MLP) and the logits
  projection: 2 x weights x target tokens;
* cross-attention k/v projections: 2 x weights x input tokens, once per decoder layer;
* attention products (scores q.k and the weighted sum of v): 2 x 2 x Lq x Lk x heads x
  head_dim per row and layer, over the full (packed/padded) rows, causal ones included,
  since the hardware computes them;
* embedding lookups, norms, softmax, biases: ignored (they are not matmuls).

A training step is 3 x the forward pass (backward = 2 x forward). Token counts are the row
slots the step computes (padding included); the non-padding fraction is logged beside it.
"""

from __future__ import annotations

from typing import Any

# Dense bf16 peak FLOP/s per device, for model FLOPs utilisation (MFU).
PEAK_FLOPS = {
  "TPU v4": 275e12,
  "TPU v5 lite": 197e12,
  "TPU v5e": 197e12,
  "TPU v5p": 459e12,
  "TPU v5": 459e12,
  "TPU v6 lite": 918e12,
  "TPU v6e": 918e12,
  "TPU v3": 123e12,
  "H100": 989e12,
  "H200": 989e12,
  "H800": 989e12,
  "A100": 312e12,
  "A800": 312e12,
  "L4": 121e12,
  "V100": 125e12,
  "B200": 2250e12,
}


def peak_flops_per_device(device: Any) -> float | None:
  """The device's dense bf16 peak, or None when unknown (e.g. CPU)."""
  kind = getattr(device, "device_kind", "") or ""
  for name in sorted(PEAK_FLOPS, key=len, reverse=True):
    if name.lower() in kind.lower():
      return PEAK_FLOPS[name]
  return None


def forward_flops(config: Any, *, batch_size: int, input_length: int, target_length: int) -> float:
  """Forward-pass FLOPs of `config` (a `T5Config`) on [batch, Li] -> [batch, Lt] rows."""
  e, f, v = config.emb_dim, config.mlp_dim, config.vocab_size
  hd = config.num_heads * config.head_dim
  n_in = len(tuple(getattr(config, "mlp_activations", ("gelu", "linear"))))
  mlp = n_in * e * f + f * e  # wi_0..wi_{n-1} and wo
  attn = 4 * e * hd  # q, k, v, o
  enc_tokens, dec_tokens = batch_size * input_length, batch_size * target_length
  enc_layers, dec_layers = config.num_encoder_layers, config.num_decoder_layers

  weights = 2.0 * enc_layers * (attn + mlp) * enc_tokens
  weights += 2.0 * dec_layers * (attn + 2 * e * hd + mlp) * dec_tokens  # self + cross q/o
  weights += 2.0 * dec_layers * (2 * e * hd) * enc_tokens  # cross k/v
  weights += 2.0 * e * v * dec_tokens  # logits
  products = (
    4.0
    * hd
    * batch_size
    * (
      enc_layers * input_length * input_length
      + dec_layers * (target_length * target_length + target_length * input_length)
    )
  )
  return weights + products


def train_step_flops(
  config: Any, *, batch_size: int, input_length: int, target_length: int
) -> float:
  """FLOPs of one training step (forward + backward = 3 x forward)."""
  return 3.0 * forward_flops(
    config, batch_size=batch_size, input_length=input_length, target_length=target_length
  )
