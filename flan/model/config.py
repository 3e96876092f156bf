"""`T5Config`: the network's hyperparameters and its kernel choices, made once.

Kept apart from `flan.model.network` so that the building blocks (`flan.model.layers`) and the
network that assembles them both import it, and neither imports the other.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from flan.errors import UserError
from flan.model import attention as attention_lib

REMAT_POLICIES = ("none", "full", "minimal")
ACTIVATION_NAMES = ("gelu", "relu", "linear")  # `flan.model.layers.ACTIVATIONS`
MATMULS = ("xla", "flat")


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Global hyperparameters of the network (sizes per `configs/models/*.gin`).

  Attributes:
    vocab_size: rows of the embedding and columns of the logits layer (32128 for T5).
    emb_dim: width of the residual stream.
    num_heads: attention heads per attention layer.
    num_encoder_layers: encoder blocks.
    num_decoder_layers: decoder blocks.
    head_dim: width of one head; num_heads * head_dim need not equal emb_dim (small: 384).
    mlp_dim: hidden width of the MLP.
    mlp_activations: one entry per input projection, multiplied together (gated GELU).
    dropout_rate: used only when the caller enables dropout and passes a "dropout" RNG.
    dtype: activation dtype ("bfloat16" on accelerators, "float32" on CPU and in tests);
      parameters, norms and logits are always float32.
    relative_attention_num_buckets: buckets of the relative position bias.
    relative_attention_max_distance: distance beyond which all offsets share a bucket.
    scan_layers: run each stack as one `nn.scan` over stacked layer parameters (a leading
      "layers" axis); compiles once per stack instead of once per layer.
    remat_policy: "none", "full" (recompute each layer in the backward pass) or "minimal"
      (keep the outputs of weight matmuls, recompute the rest).
    attention: the attention core (`flan.model.attention`): "xla" (the einsum form), "rows"
      (the row-blocked kernel) or "auto" ("rows" on CPU, else "xla"); read `attention_kernel`.
    matmul: the weight matmuls (`flan.model.layers.Dense`): "xla" (one dot on the
      [batch, length, in] operands, XLA's gradient), "flat" (one [tokens, in] @ [in, out]
      matmul, and in bfloat16 a gradient whose products all take XLA:CPU's bfloat16 kernel),
      or "auto" ("flat" on CPU, else "xla"); read `matmul_kernel`.

  "auto" is resolved by `attention_kernel` / `matmul_kernel` from the platform of JAX's
  devices (fixed for the process), read when a model is built from the config: not when the
  config is built, because gin builds it before a multi-process run has initialised JAX's
  backends. The fields keep "auto", so a saved config stays portable across platforms; the
  layers read only the resolved choice.
  """

  vocab_size: int
  emb_dim: int
  num_heads: int
  num_encoder_layers: int
  num_decoder_layers: int
  head_dim: int
  mlp_dim: int
  mlp_activations: tuple[str, ...] = ("gelu", "linear")
  dropout_rate: float = 0.0
  dtype: str = "bfloat16"
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  scan_layers: bool = False
  remat_policy: str = "none"
  attention: str = "auto"
  matmul: str = "auto"

  def __post_init__(self):
    object.__setattr__(self, "mlp_activations", tuple(self.mlp_activations))
    unknown = [a for a in self.mlp_activations if a not in ACTIVATION_NAMES]
    if unknown:
      raise UserError(
        f"T5Config.mlp_activations has unknown {unknown}; use names from "
        f"{sorted(ACTIVATION_NAMES)} (T5 1.1: ('gelu', 'linear'))."
      )
    if self.attention not in ("auto",) + attention_lib.IMPLEMENTATIONS:
      raise UserError(
        f"T5Config.attention={self.attention!r} is not one of "
        f"{('auto',) + attention_lib.IMPLEMENTATIONS}."
      )
    if self.matmul not in ("auto",) + MATMULS:
      raise UserError(f"T5Config.matmul={self.matmul!r} is not one of {('auto',) + MATMULS}.")
    if self.remat_policy not in REMAT_POLICIES:
      raise UserError(
        f"T5Config.remat_policy={self.remat_policy!r} is not one of {REMAT_POLICIES}."
      )
    try:
      jnp.dtype(self.dtype)
    except TypeError:
      raise UserError(
        f"T5Config.dtype={self.dtype!r} is not a dtype name; use 'bfloat16' or 'float32'."
      ) from None

  @property
  def activation_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.dtype)

  @property
  def attention_kernel(self) -> str:
    """`attention` with "auto" resolved: "xla" or "rows"."""
    if self.attention != "auto":
      return self.attention
    return "rows" if _platform() == "cpu" else "xla"

  @property
  def matmul_kernel(self) -> str:
    """`matmul` with "auto" resolved: "xla" or "flat"."""
    if self.matmul != "auto":
      return self.matmul
    return "flat" if _platform() == "cpu" else "xla"


def _platform() -> str:
  """The platform ("cpu", "gpu", "tpu") of the devices models run on."""
  return jax.devices()[0].platform


# The fields that fix a checkpoint's parameter shapes (and the MLP's gating), in the order an
# error lists them.
SIZE_FIELDS = (
  "vocab_size",
  "emb_dim",
  "num_heads",
  "num_encoder_layers",
  "num_decoder_layers",
  "head_dim",
  "mlp_dim",
  "mlp_activations",
  "relative_attention_num_buckets",
  "relative_attention_max_distance",
)


def check_sizes(found: T5Config, config: T5Config, what: str, fields=SIZE_FIELDS) -> None:
  """Raises one UserError naming every size where checkpoint `found` and model `config` differ.

  Args:
    found: the config read off the checkpoint.
    config: the model's config.
    what: the checkpoint, as the error names it (e.g. "The t5x checkpoint /ckpts/x").
    fields: the fields to compare (a format that does not record one leaves it out).
  """
  diff = {
    k: (getattr(found, k), getattr(config, k))
    for k in fields
    if getattr(found, k) != getattr(config, k)
  }
  if diff:
    raise UserError(
      f"{what} does not fit the model: (checkpoint, model) = {diff}; use the model gin of "
      "that checkpoint's size."
    )
