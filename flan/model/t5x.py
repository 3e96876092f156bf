"""t5x checkpoints (msgpack `checkpoint` file plus TensorStore arrays) -> our parameters.

t5x's checkpointer (`t5x/checkpoints.py`, the format of the public T5 1.1, LM-adapted and
FLAN-T5 checkpoints such as `t5_1_1_lm100k_base/checkpoint_1100000`) writes one directory
per step:

    checkpoint_<step>/
      checkpoint                                 msgpack (flax.serialization) of
                                                 {"version": 3, "optimizer": {"target": params,
                                                  "state": {"step", "param_states"}}}
      target.encoder.layers_0.attention.query.kernel/   a zarr array (TensorStore), gzip chunks
      state.param_states.encoder....v_row/              optimizer moments, same way
      ...

Every leaf of the msgpack tree is either the array itself (small, unpartitioned ones) or the
JSON TensorStore spec of a zarr array, whose path is RELATIVE to the step directory (dots
for slashes); for a checkpoint written to `gs://` the spec's kvstore is `gcs` with a dummy
bucket that the reader replaces with the checkpoint's own. Version 0 files hold the state
dict without the `optimizer` wrapper.

Parameter names under `target` are ours (`token_embedder/embedding`,
`encoder/layers_0/attention/query/kernel` [embed, heads*head_dim], `encoder/relpos_bias/
rel_embedding` [heads, buckets], `decoder/logits_dense/kernel` [embed, vocab], ...), so the
import is a read, a cast to float32 and, for a scanned model, a stack of the layers. A T5 1.0
checkpoint (logits through the shared embedding, no `logits_dense`) gets the embedding divided
by sqrt(emb_dim) as an untied `logits_dense`, which is exact (as the HF importer does).

Only parameters are read: training from a t5x checkpoint starts a fresh Adafactor at step 0
(as from Hugging Face weights); t5x itself would also restore the step and the moments.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
from etils import epath

from flan.model import config as config_lib
from flan.model import network

CHECKPOINT_FILE = "checkpoint"  # the msgpack file in every t5x checkpoint_<step> directory
STEP_PREFIX = "checkpoint"


def is_t5x_step_dir(path: str | epath.PathLike) -> bool:
  """A t5x `checkpoint_<step>` directory: it holds the msgpack `checkpoint` FILE."""
  return (epath.Path(path) / CHECKPOINT_FILE).is_file()


def find_step_dir(path: str | epath.PathLike) -> epath.Path | None:
  """`path` if it is a t5x step directory (or its msgpack file), else the newest one inside
  (a t5x MODEL_DIR), else None."""
  path = epath.Path(path)
  if path.name == CHECKPOINT_FILE and path.is_file():
    return path.parent
  if is_t5x_step_dir(path):
    return path
  if not path.is_dir():
    return None
  steps = []
  for d in path.glob(f"{STEP_PREFIX}_*"):
    tail = d.name.rsplit("_", 1)[1]
    if tail.isdigit() and is_t5x_step_dir(d):
      steps.append((int(tail), d))
  return max(steps)[1] if steps else None


def step_of(step_dir: epath.Path) -> int | None:
  """The step in a `checkpoint_<step>` directory's name, if it has one."""
  tail = step_dir.name.rsplit("_", 1)[-1]
  return int(tail) if step_dir.name.startswith(STEP_PREFIX + "_") and tail.isdigit() else None


def _is_spec(x: Any) -> bool:
  return isinstance(x, dict) and "driver" in x and ("kvstore" in x or "path" in x)


def _absolute_spec(spec: dict, step_dir: epath.Path) -> dict:
  """The spec with its relative path made absolute under `step_dir` (t5x's rule), with the
  kvstore driver chosen by where the checkpoint is now (file locally, gcs on gs://)."""
  spec = {k: (dict(v) if isinstance(v, dict) else v) for k, v in spec.items()}
  kvstore = spec.get("kvstore", {})
  relative = kvstore.get("path", spec.pop("path", None))  # tensorstore < 0.1.14 kept it outside
  if relative is None:
    raise ValueError(f"A TensorStore spec in {step_dir / CHECKPOINT_FILE} has no path: {spec}")
  match = re.fullmatch(r"gs://([^/]*)/(.*)", str(step_dir), re.DOTALL)
  if match:
    spec["kvstore"] = {
      "driver": "gcs",
      "bucket": match.group(1),
      "path": f"{match.group(2).rstrip('/')}/{relative}",
    }
  else:
    spec["kvstore"] = {"driver": "file", "path": str(step_dir / relative)}
  metadata = dict(spec.get("metadata", {}))
  metadata.pop("chunks", None)  # as t5x: open whatever chunking and compressor were written
  metadata.pop("compressor", None)
  spec["metadata"] = metadata
  return spec


def _read_leaf(leaf: Any, step_dir: epath.Path, name: str) -> np.ndarray:
  if _is_spec(leaf):
    import tensorstore as ts

    spec = _absolute_spec(leaf, step_dir)
    try:
      value = ts.open(spec, open=True, read=True).result().read().result()
    except Exception as e:
      raise ValueError(
        f"Cannot read {name} of the t5x checkpoint {step_dir} ({type(e).__name__}: {e})."
      ) from None
    return np.asarray(value)
  return np.asarray(leaf)


def read_target(step_dir: str | epath.PathLike) -> dict[str, np.ndarray]:
  """The parameters (`target`) of a t5x step directory: {"encoder/layers_0/...": array}.

  Raises:
    ValueError: the msgpack file is not a t5x checkpoint, or an array cannot be read.
  """
  from flax import serialization

  step_dir = epath.Path(step_dir)
  contents = serialization.msgpack_restore((step_dir / CHECKPOINT_FILE).read_bytes())
  if not isinstance(contents, dict):
    raise ValueError(f"{step_dir / CHECKPOINT_FILE} is not a t5x checkpoint (no state dict).")
  state = contents["optimizer"] if contents.get("version", 0) else contents
  if not isinstance(state, dict) or "target" not in state:
    raise ValueError(
      f"{step_dir / CHECKPOINT_FILE} has no `target` (parameters); is it a t5x "
      "checkpoint written by t5x's Checkpointer?"
    )
  flat = {}

  def walk(tree, prefix):
    if _is_spec(tree) or not isinstance(tree, dict):
      flat["/".join(prefix)] = _read_leaf(tree, step_dir, "/".join(("target",) + prefix))
      return
    for key, value in tree.items():
      walk(value, prefix + (key,))

  walk(state["target"], ())
  return flat


def config_from_shapes(
  flat: dict[str, np.ndarray], *, dtype: str = "bfloat16", scan_layers: bool = False
) -> network.T5Config:
  """The `T5Config` a t5x parameter tree implies (t5x keeps no config beside its weights).

  Heads come from `relpos_bias/rel_embedding` [heads, buckets], head_dim from the query
  kernel [embed, heads * head_dim]; the MLP's inputs (`wi` or `wi_0`, `wi_1`) tell T5 1.0's
  ReLU from T5 1.1's gated GELU. relative_attention_max_distance is not stored: 128, as in
  every T5 gin.
  """

  def get(name):
    if name not in flat:
      raise ValueError(
        f"The t5x checkpoint has no {name!r}; is it a T5 encoder-decoder "
        f"(t5x's examples/t5 network)? It holds e.g. {sorted(flat)[:3]}."
      )
    return flat[name]

  vocab_size, emb_dim = get("token_embedder/embedding").shape
  num_heads, num_buckets = get("encoder/relpos_bias/rel_embedding").shape
  head_dim = get("encoder/layers_0/attention/query/kernel").shape[1] // num_heads
  count = lambda stack: len(
    {m.group(1) for k in flat for m in [re.match(rf"{stack}/layers_(\d+)/", k)] if m}
  )
  gated = "encoder/layers_0/mlp/wi_0/kernel" in flat
  mlp_dim = get("encoder/layers_0/mlp/" + ("wi_0" if gated else "wi") + "/kernel").shape[1]
  return network.T5Config(
    vocab_size=vocab_size,
    emb_dim=emb_dim,
    num_heads=num_heads,
    num_encoder_layers=count("encoder"),
    num_decoder_layers=count("decoder"),
    head_dim=head_dim,
    mlp_dim=mlp_dim,
    mlp_activations=("gelu", "linear") if gated else ("relu",),
    dtype=dtype,
    relative_attention_num_buckets=num_buckets,
    scan_layers=scan_layers,
  )


def params_from_t5x(
  path: str | epath.PathLike, *, dtype: str = "bfloat16", scan_layers: bool = False
) -> tuple[network.T5Config, dict]:
  """Reads a t5x checkpoint into (`T5Config`, float32 numpy params in our layout).

  Args:
    path: a t5x `checkpoint_<step>` directory, its `checkpoint` file, or a t5x MODEL_DIR
      (its newest step).
    dtype: the activation dtype of the returned config.
    scan_layers: return the stacked `layers` layout of `T5Config(scan_layers=True)`.
  """
  step_dir = find_step_dir(path)
  if step_dir is None:
    raise FileNotFoundError(
      f"{path} is not a t5x checkpoint: expected a checkpoint_<step> "
      f"directory holding the msgpack file `{CHECKPOINT_FILE}`."
    )
  flat = {k: np.asarray(v, np.float32) for k, v in read_target(step_dir).items()}
  config = config_from_shapes(flat, dtype=dtype, scan_layers=scan_layers)
  if "decoder/logits_dense/kernel" not in flat:  # T5 1.0: logits = embed.attend(y) / sqrt(E)
    flat["decoder/logits_dense/kernel"] = np.ascontiguousarray(
      flat["token_embedder/embedding"].T / np.float32(math.sqrt(config.emb_dim))
    )
  params: dict = {}
  for name, value in flat.items():
    tree = params
    *parents, leaf = name.split("/")
    for key in parents:
      tree = tree.setdefault(key, {})
    tree[leaf] = value
  if scan_layers:
    params = network.scan_layer_params(params, config)
  return config, params


def load_params(path: str | epath.PathLike, config: network.T5Config) -> dict:
  """Params of a t5x checkpoint laid out for `config` (scanned or not), checked against it.

  Raises:
    UserError: the checkpoint's sizes differ from the model's (one line naming them).
  """
  found, params = params_from_t5x(path, dtype=config.dtype, scan_layers=config.scan_layers)
  config_lib.check_sizes(
    found,
    config,
    f"The t5x checkpoint {path}",
    # t5x records no max distance: it is the model's own
    fields=config_lib.SIZE_FIELDS[:-1],
  )
  return params
