"""Shared by the trainer tests: a tiny model and a synthetic, resumable batch stream.

`tiny_model()` is the real `flan.model.encoder_decoder.EncoderDecoderModel` on a 2-layer T5 when the
model module exists, else a small stand-in with the same contract (init,
param_logical_specs, loss_fn, config) so the trainer can be tested on its own.
`SyntheticIterator` follows the input pipeline's contract (`next`, `state`, `restore`,
`stats`, `batch_shapes`): batch k is a pure function of (seed, k), so resume is exact.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P


def train(
  *, model: Any, make_optimizer: Any = None, make_iterator: Any = None, **knobs: Any
) -> dict[str, Any]:
  """`flan.train.train` with its options built from flat knobs named as the gin macros.

  `train(model=m, mixture_or_task_name="synthetic", train_steps=3, model_dir=d, ...)`: each
  knob goes to the option class that has a field of that name; the optimizer defaults to
  `optimizer.make_optimizer` (Adafactor, constant 1e-3: finetune.gin's).
  """
  from flan import train as train_lib
  from flan.training import optimizer as optimizer_lib
  from flan.training import options

  groups = {}
  for arg, cls in (
    ("data", options.DataOptions),
    ("run", options.RunOptions),
    ("checkpoint", options.CheckpointOptions),
    ("evaluation", options.HeldoutEvalOptions),
  ):
    names = {f.name for f in dataclasses.fields(cls)}
    groups[arg] = cls(**{k: knobs.pop(k) for k in list(knobs) if k in names})
  if knobs:
    raise TypeError(f"No option takes {sorted(knobs)}.")
  default = lambda param_axes: optimizer_lib.make_optimizer(param_axes=param_axes)[0]
  return train_lib.train(
    model=model, make_optimizer=make_optimizer or default, make_iterator=make_iterator, **groups
  )


def synthetic_run(model_dir, steps, *, model=None, iterator=None, **knobs: Any) -> dict[str, Any]:
  """`train` of the stand-in model on synthetic batches: the tests' short run into `model_dir`.

  Defaults: batch 8, seed 3, a checkpoint every 2 steps, a log line every 2; `knobs` override.
  """
  args = dict(
    model=model or StandInModel(),
    mixture_or_task_name="synthetic",
    task_feature_lengths=LENGTHS,
    train_steps=steps,
    model_dir=str(model_dir),
    batch_size=8,
    random_seed=3,
    checkpoint_period=2,
    log_every=2,
    make_iterator=iterator or SyntheticIterator,
  )
  args.update(knobs)
  return train(**args)


VOCAB = 384  # >= the byte vocabulary (259), which train() checks against
LENGTHS = {"inputs": 16, "targets": 8}


@dataclasses.dataclass(frozen=True)
class StandInConfig:
  vocab_size: int = VOCAB
  emb_dim: int = 32
  num_heads: int = 2
  head_dim: int = 8
  mlp_dim: int = 64
  mlp_activations: tuple = ("gelu", "linear")
  num_encoder_layers: int = 1
  num_decoder_layers: int = 1
  dropout_rate: float = 0.1


class _StandInNet(nn.Module):
  config: StandInConfig

  @nn.compact
  def __call__(self, batch, *, enable_dropout):
    c = self.config
    init = nn.initializers.normal(0.1)
    emb = self.param(
      "embedding", nn.with_logical_partitioning(init, ("vocab", "embed")), (c.vocab_size, c.emb_dim)
    )
    enc = emb[batch["encoder_input_tokens"]]  # [batch, li, embed]
    mask = (batch["encoder_input_tokens"] > 0)[..., None]
    context = (enc * mask).sum(1, keepdims=True) / jnp.maximum(mask.sum(1, keepdims=True), 1)
    x = emb[batch["decoder_input_tokens"]] + context  # [batch, lt, embed]
    wi = self.param(
      "wi", nn.with_logical_partitioning(init, ("embed", "mlp")), (c.emb_dim, c.mlp_dim)
    )
    wo = self.param(
      "wo", nn.with_logical_partitioning(init, ("mlp", "embed")), (c.mlp_dim, c.emb_dim)
    )
    h = nn.gelu(x @ wi)
    h = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(h, deterministic=not enable_dropout)
    x = x + h @ wo
    logits_w = self.param(
      "logits", nn.with_logical_partitioning(init, ("embed", "vocab")), (c.emb_dim, c.vocab_size)
    )
    return (x @ logits_w).astype(jnp.float32)  # [batch, lt, vocab]


class StandInModel:
  """The model contract on a one-block network: summed token loss + z-loss."""

  def __init__(
    self,
    config: StandInConfig = StandInConfig(),
    z_loss: float = 1e-4,
    loss_normalizing_factor: str | None = None,
  ):
    self.config, self.z_loss = config, z_loss
    self.module = _StandInNet(config)
    self.loss_normalizing_factor = loss_normalizing_factor  # as EncoderDecoderModel's

  def _shapes(self, batch_shapes):
    return {k: jnp.ones(tuple(s), jnp.int32) for k, s in batch_shapes.items()}

  def init(self, rng, batch_shapes):
    variables = self.module.init(rng, self._shapes(batch_shapes), enable_dropout=False)
    return nn.meta.unbox(variables["params"])

  def param_logical_specs(self):
    shapes = {"encoder_input_tokens": (1, 4), "decoder_input_tokens": (1, 2)}
    boxed = jax.eval_shape(
      lambda: self.module.init(jax.random.PRNGKey(0), self._shapes(shapes), enable_dropout=False)
    )["params"]
    return nn.get_partition_spec(boxed)

  def loss_normalizer(self, batch):
    from flan.model import encoder_decoder

    return encoder_decoder.loss_normalizer_and_weights(self.loss_normalizing_factor, batch)[0]

  def loss_fn(self, params, batch, dropout_rng, *, normalizer=None):
    from flan.model import encoder_decoder

    own, loss_weights = encoder_decoder.loss_normalizer_and_weights(
      self.loss_normalizing_factor, batch
    )
    normalizer = own if normalizer is None else normalizer
    logits = self.module.apply(
      {"params": params},
      batch,
      enable_dropout=dropout_rng is not None,
      rngs={"dropout": dropout_rng} if dropout_rng is not None else {},
    )
    targets, weights = batch["decoder_target_tokens"], batch["decoder_loss_weights"]
    log_z = jax.nn.logsumexp(logits, axis=-1)
    logp = jnp.take_along_axis(logits, targets[..., None], -1)[..., 0] - log_z
    cross = -(logp * loss_weights).sum() / normalizer
    z = (self.z_loss * jnp.square(log_z) * loss_weights).sum() / normalizer
    correct = ((logits.argmax(-1) == targets) * weights).sum()
    loss = cross + z
    return loss, {
      "loss": loss,
      "z_loss": z,
      "cross_ent_loss": cross,
      "cross_ent_sum": -(logp * weights).sum(),
      "accuracy": correct.astype(jnp.float32),
      "num_tokens": weights.sum().astype(jnp.float32),
    }


def t5_vocabulary_model() -> Any:
  """The smallest real T5 over the T5 vocabulary's 32,128 ids (tests on `../shared` data)."""
  from flan.model import encoder_decoder as model_lib
  from flan.model import network

  config = network.T5Config(
    vocab_size=32128,
    emb_dim=8,
    num_heads=2,
    head_dim=4,
    mlp_dim=16,
    num_encoder_layers=1,
    num_decoder_layers=1,
    dropout_rate=0.0,
    dtype="float32",
  )
  return model_lib.EncoderDecoderModel(config)


def tiny_model(dropout_rate: float = 0.1, dtype: str = "float32") -> Any:
  """The real tiny T5 (float32 activations by default)."""
  try:
    from flan.model import encoder_decoder as model_lib
    from flan.model import network
  except ImportError:
    return StandInModel(StandInConfig(dropout_rate=dropout_rate))
  config = network.T5Config(
    vocab_size=VOCAB,
    emb_dim=32,
    num_heads=2,
    num_encoder_layers=2,
    num_decoder_layers=2,
    head_dim=8,
    mlp_dim=64,
    dropout_rate=dropout_rate,
    dtype=dtype,
  )
  return model_lib.EncoderDecoderModel(config)


class PoisonedModel:
  """Wraps a model: rows flagged by batch["poison"] turn the loss and gradients into NaN."""

  def __init__(self, inner):
    self.inner, self.config = inner, inner.config

  def init(self, rng, batch_shapes):
    return self.inner.init(rng, {k: v for k, v in batch_shapes.items() if k != "poison"})

  def param_logical_specs(self):
    return self.inner.param_logical_specs()

  def loss_normalizer(self, batch):
    return self.inner.loss_normalizer({k: v for k, v in batch.items() if k != "poison"})

  def loss_fn(self, params, batch, dropout_rng, *, normalizer=None):
    batch = dict(batch)
    poison = batch.pop("poison", None)
    loss, metrics = self.inner.loss_fn(params, batch, dropout_rng, normalizer=normalizer)
    if poison is not None:
      loss = loss * jnp.where(poison.max() > 0, jnp.nan, 1.0)
      metrics = dict(metrics, loss=loss)
    return loss, metrics


def make_batch(seed: int, index: int, batch_size: int, lengths=LENGTHS) -> dict[str, np.ndarray]:
  """Batch `index` of a copy task: targets are the first input tokens, then EOS."""
  rng = np.random.default_rng([seed, index])
  li, lt = lengths["inputs"], lengths["targets"]
  enc = rng.integers(2, VOCAB, size=(batch_size, li), dtype=np.int32)
  n_in = rng.integers(lt, li + 1, size=batch_size)
  enc[np.arange(li)[None, :] >= n_in[:, None]] = 0
  n_out = rng.integers(2, lt + 1, size=batch_size)
  dec = enc[:, :lt].copy()
  dec[np.arange(lt)[None, :] == (n_out - 1)[:, None]] = 1  # EOS
  dec[np.arange(lt)[None, :] >= n_out[:, None]] = 0
  dec_in = np.concatenate([np.zeros((batch_size, 1), np.int32), dec[:, :-1]], axis=1)
  return {
    "encoder_input_tokens": enc,
    "decoder_target_tokens": dec,
    "decoder_input_tokens": dec_in,
    "decoder_loss_weights": (dec > 0).astype(np.int32),
  }


class SyntheticIterator:
  """The input pipeline's contract over `make_batch`; position is the whole state."""

  def __init__(self, name, lengths, batch_size, seed, *, poison_at=(), **unused):
    self.lengths, self.batch_size, self.seed = dict(lengths), batch_size, seed
    self.position = 0
    self.poison_at = set(poison_at)  # 1-based steps whose batch makes the loss NaN

  def __iter__(self):
    return self

  def __next__(self):
    self.position += 1
    batch = make_batch(self.seed, self.position, self.batch_size, self.lengths)
    if self.poison_at:
      batch["poison"] = np.full((self.batch_size,), self.position in self.poison_at, np.int32)
    return batch

  def state(self):
    return {"position": self.position, "seed": self.seed}

  def restore(self, state):
    self.position = int(state["position"])

  @property
  def stats(self):
    return {"truncated_examples": 0}

  def batch_shapes(self):
    extra = {"poison": (self.batch_size,)} if self.poison_at else {}
    return {
      **extra,
      "encoder_input_tokens": (self.batch_size, self.lengths["inputs"]),
      "decoder_target_tokens": (self.batch_size, self.lengths["targets"]),
      "decoder_input_tokens": (self.batch_size, self.lengths["targets"]),
      "decoder_loss_weights": (self.batch_size, self.lengths["targets"]),
    }


def spec_of(specs: Any) -> list[P]:
  return jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, P))
