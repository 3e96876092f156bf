"""Hugging Face T5 / FLAN-T5 checkpoints <-> `flan.model.network` parameters.

A Hugging Face directory holds `config.json` and `model.safetensors` (or shards listed in
`model.safetensors.index.json`), or torch's `pytorch_model.bin` (or shards listed in
`pytorch_model.bin.index.json`), read with torch where it is installed. Torch `Linear`
weights are [out, in]; our kernels are [in, out], so every matrix is transposed. The relative
position tables live in block 0 of each stack in Hugging Face and once per stack here.

T5 1.0 checkpoints (ReLU MLP, logits through the tied embedding scaled by d_model**-0.5)
import too: the scaled embedding becomes an untied `logits_dense`, which is exact. Export
always writes the untied T5 1.1 form: `lm_head.weight` plus `"tie_word_embeddings": false`
(transformers 5 ties lm_head to the shared embedding unless the config says false, and would
then silently use the embedding as the output layer).

An export is a complete model directory, as `save_pretrained` writes one (files 0644 under
the usual umask): config.json, model.safetensors, generation_config.json (T5's ids: decoder
start = pad = 0, eos = 1) and the tokenizer of the run's vocabulary (`write_tokenizer`).
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import numpy as np
import safetensors.numpy
from etils import epath

from flan.errors import UserError
from flan.model import config as config_lib
from flan.model import network

_MLP_ACTIVATIONS = {
  "gated-gelu": ("gelu", "linear"),  # T5 1.1 / FLAN-T5 (HF's "gelu_new" = tanh GELU)
  "gated-relu": ("relu", "linear"),
  "relu": ("relu",),  # T5 1.0
}
_SINGLE_ATTENTION = {"query": "q", "key": "k", "value": "v", "out": "o"}
# T5's special ids, as seqio's vocabularies and HF's T5 generation config have them.
GENERATION_CONFIG = {"decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0}
_SPECIAL_TOKENS = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


_T5_TYPES = ("t5", "mt5")
_REQUIRED_KEYS = ("vocab_size", "d_model", "num_heads", "num_layers", "d_kv", "d_ff")


def config_from_hf(
  hf_config: dict[str, Any],
  *,
  dtype: str = "bfloat16",
  scan_layers: bool = False,
  where: str = "config.json",
) -> network.T5Config:
  """Reads a Hugging Face T5 `config.json` dict into a `T5Config`.

  Raises:
    UserError: `where` (named in the message) is not a T5 config (another architecture).
  """
  model_type = hf_config.get("model_type")
  missing = [k for k in _REQUIRED_KEYS if k not in hf_config]
  if (model_type is not None and model_type not in _T5_TYPES) or missing:
    raise UserError(
      f"{where} is not a T5 config (model_type {model_type!r}, architectures "
      f"{hf_config.get('architectures')}{', missing ' + ', '.join(missing) if missing else ''}"
      "); pass a T5 / FLAN-T5 checkpoint directory."
    )
  proj = hf_config.get("feed_forward_proj", "relu")
  if proj not in _MLP_ACTIVATIONS:
    raise UserError(
      f"feed_forward_proj={proj!r} is not supported; use a T5 checkpoint with one "
      f"of {sorted(_MLP_ACTIVATIONS)} (FLAN-T5 is 'gated-gelu')."
    )
  return network.T5Config(
    vocab_size=hf_config["vocab_size"],
    emb_dim=hf_config["d_model"],
    num_heads=hf_config["num_heads"],
    num_encoder_layers=hf_config["num_layers"],
    num_decoder_layers=hf_config.get("num_decoder_layers") or hf_config["num_layers"],
    head_dim=hf_config["d_kv"],
    mlp_dim=hf_config["d_ff"],
    mlp_activations=_MLP_ACTIVATIONS[proj],
    dropout_rate=hf_config.get("dropout_rate", 0.0),
    dtype=dtype,
    relative_attention_num_buckets=hf_config.get("relative_attention_num_buckets", 32),
    relative_attention_max_distance=hf_config.get("relative_attention_max_distance", 128),
    scan_layers=scan_layers,
  )


def config_to_hf(config: network.T5Config) -> dict[str, Any]:
  """The `config.json` dict of an untied T5 1.1-style checkpoint for `config`."""
  proj = {v: k for k, v in _MLP_ACTIVATIONS.items()}.get(config.mlp_activations)
  if proj is None:
    raise UserError(f"mlp_activations={config.mlp_activations} has no Hugging Face equivalent.")
  return {
    "architectures": ["T5ForConditionalGeneration"],
    "model_type": "t5",
    "vocab_size": config.vocab_size,
    "d_model": config.emb_dim,
    "d_kv": config.head_dim,
    "d_ff": config.mlp_dim,
    "num_layers": config.num_encoder_layers,
    "num_decoder_layers": config.num_decoder_layers,
    "num_heads": config.num_heads,
    "relative_attention_num_buckets": config.relative_attention_num_buckets,
    "relative_attention_max_distance": config.relative_attention_max_distance,
    "dropout_rate": config.dropout_rate,
    "layer_norm_epsilon": 1e-6,
    "feed_forward_proj": proj,
    "is_gated_act": proj.startswith("gated-"),
    "dense_act_fn": "gelu_new" if "gelu" in proj else "relu",
    "initializer_factor": 1.0,
    "tie_word_embeddings": False,
    "scale_decoder_outputs": False,
    "is_encoder_decoder": True,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
    "use_cache": True,
  }


def _load_safetensors(path: epath.Path) -> dict[str, np.ndarray]:
  """One safetensors file; a missing or damaged (e.g. truncated) one is a UserError naming it."""
  if not path.is_file():
    raise UserError(
      f"{path} is missing (listed in model.safetensors.index.json); download the checkpoint again."
    )
  try:
    return safetensors.numpy.load(path.read_bytes())
  except Exception as e:
    raise UserError(
      f"{path} is not a readable safetensors file ({str(e).splitlines()[0]}); "
      "it may be truncated: download it again."
    ) from None


def _read_tensors(directory: epath.Path) -> dict[str, np.ndarray]:
  """Every tensor of a HF directory: safetensors first, else torch's pytorch_model.bin."""
  single = directory / "model.safetensors"
  index = directory / "model.safetensors.index.json"
  if single.is_file():
    return _load_safetensors(single)
  if index.is_file():
    tensors = {}
    for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
      tensors.update(_load_safetensors(directory / shard))
    return tensors
  bins = [directory / "pytorch_model.bin"]
  bin_index = directory / "pytorch_model.bin.index.json"
  if bin_index.is_file():
    bins = [
      directory / s for s in sorted(set(json.loads(bin_index.read_text())["weight_map"].values()))
    ]
  if bins[0].is_file():
    return _read_torch_bins(bins)
  raise UserError(
    f"{directory} has no model.safetensors (or model.safetensors.index.json) and no "
    "pytorch_model.bin: is it a directory written by save_pretrained?"
  )


def _read_torch_bins(files: list) -> dict[str, np.ndarray]:
  """Tensors of torch `.bin` files, loaded with `weights_only=True` (no pickled code runs)."""
  try:
    import torch
  except ImportError:
    raise UserError(
      f"{files[0]} is a torch file and torch is not installed: `pip install torch`, or "
      "re-save the checkpoint with `save_pretrained(dir, safe_serialization=True)`."
    ) from None
  tensors = {}
  for f in files:
    if not f.is_file():
      raise UserError(
        f"{f} is missing (listed in pytorch_model.bin.index.json); download the checkpoint again."
      )
    with f.open("rb") as fp:
      state = torch.load(fp, map_location="cpu", weights_only=True)
    tensors.update({k: v.float().numpy() for k, v in state.items()})  # bfloat16 has no numpy
  return tensors


def _layer_map(stack: str, kind: str) -> dict[str, str]:
  """Our sub-block name -> Hugging Face `layer.<j>` prefix within one block."""
  if stack == "encoder":
    return {
      "attention": "layer.0.SelfAttention",
      "pre_attention_layer_norm": "layer.0.layer_norm",
      "mlp": "layer.1.DenseReluDense",
      "pre_mlp_layer_norm": "layer.1.layer_norm",
    }[kind]
  return {
    "self_attention": "layer.0.SelfAttention",
    "pre_self_attention_layer_norm": "layer.0.layer_norm",
    "encoder_decoder_attention": "layer.1.EncDecAttention",
    "pre_cross_attention_layer_norm": "layer.1.layer_norm",
    "mlp": "layer.2.DenseReluDense",
    "pre_mlp_layer_norm": "layer.2.layer_norm",
  }[kind]


def _name_pairs(config: network.T5Config):
  """Yields (our path tuple, HF tensor name, transpose?) for every parameter."""
  yield ("token_embedder", "embedding"), "shared.weight", False
  yield ("decoder", "logits_dense", "kernel"), "lm_head.weight", True
  mlp_names = (
    ["wi"]
    if len(config.mlp_activations) == 1
    else [f"wi_{i}" for i in range(len(config.mlp_activations))]
  ) + ["wo"]
  for stack, n in (("encoder", config.num_encoder_layers), ("decoder", config.num_decoder_layers)):
    norm = "encoder_norm" if stack == "encoder" else "decoder_norm"
    yield (stack, norm, "scale"), f"{stack}.final_layer_norm.weight", False
    yield (
      (stack, "relpos_bias", "rel_embedding"),
      f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
      True,
    )
    attentions = (
      ("attention",) if stack == "encoder" else ("self_attention", "encoder_decoder_attention")
    )
    norms = (
      ("pre_attention_layer_norm", "pre_mlp_layer_norm")
      if stack == "encoder"
      else ("pre_self_attention_layer_norm", "pre_cross_attention_layer_norm", "pre_mlp_layer_norm")
    )
    for i in range(n):
      block = f"{stack}.block.{i}"
      layer = (stack, f"layers_{i}")
      for attn in attentions:
        prefix = f"{block}.{_layer_map(stack, attn)}"
        for ours, theirs in _SINGLE_ATTENTION.items():
          yield (*layer, attn, ours, "kernel"), f"{prefix}.{theirs}.weight", True
      for norm_name in norms:
        yield (*layer, norm_name, "scale"), f"{block}.{_layer_map(stack, norm_name)}.weight", False
      prefix = f"{block}.{_layer_map(stack, 'mlp')}"
      for dense in mlp_names:
        yield (*layer, "mlp", dense, "kernel"), f"{prefix}.{dense}.weight", True


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _get(tree: Any, path: tuple[str, ...]) -> Any:
  for key in path:
    tree = tree[key]
  return tree


def params_from_hf(
  directory: str | epath.PathLike, *, dtype: str = "bfloat16", scan_layers: bool = False
) -> tuple[network.T5Config, dict]:
  """Reads a Hugging Face T5 directory into (`T5Config`, float32 numpy params).

  Args:
    directory: holds config.json and model.safetensors (or an index plus shards).
    dtype: the activation dtype for the returned config.
    scan_layers: return the stacked `layers` layout of `T5Config(scan_layers=True)`.
  """
  directory = epath.Path(directory)
  config_path = directory / "config.json"
  if not config_path.is_file():
    raise UserError(
      f"{directory} has no config.json; pass a Hugging Face T5 checkpoint "
      "directory (as written by save_pretrained)."
    )
  hf_config = json.loads(config_path.read_text())
  config = config_from_hf(hf_config, dtype=dtype, scan_layers=scan_layers, where=str(config_path))
  tensors = _read_tensors(directory)
  if "shared.weight" not in tensors and "encoder.embed_tokens.weight" in tensors:
    tensors["shared.weight"] = tensors["encoder.embed_tokens.weight"]
  if "lm_head.weight" not in tensors:
    # Tied checkpoint (T5 1.0): HF scales the decoder output by d_model**-0.5 before the
    # shared embedding; folding the scale into an untied copy is exact.
    if hf_config.get("scale_decoder_outputs", hf_config.get("tie_word_embeddings", True)):
      tensors["lm_head.weight"] = tensors["shared.weight"] * np.float32(config.emb_dim**-0.5)
    else:
      tensors["lm_head.weight"] = tensors["shared.weight"]
  params: dict = {}
  missing = []
  for path, name, transpose in _name_pairs(config):
    if name not in tensors:
      missing.append(name)
      continue
    value = np.asarray(tensors[name], dtype=np.float32)
    _set(params, path, np.ascontiguousarray(value.T if transpose else value))
  if missing:
    raise UserError(
      f"{directory} lacks {len(missing)} expected tensors, e.g. {missing[:3]}; "
      "is it a T5 encoder-decoder checkpoint matching its config.json?"
    )
  if scan_layers:
    params = network.scan_layer_params(params, config)
  return config, params


def load_params(directory: str | epath.PathLike, config: network.T5Config) -> dict:
  """Params of a HF directory laid out for `config` (scanned or not), checked against it.

  For initialising a model whose config comes from gin: raises one clear error when the
  checkpoint's sizes differ from the model's.
  """
  hf_config, params = params_from_hf(directory, dtype=config.dtype, scan_layers=config.scan_layers)
  config_lib.check_sizes(hf_config, config, str(directory))
  return params


def params_to_hf(config: network.T5Config, params: Any, directory: str | epath.PathLike) -> None:
  """Writes `params` as a Hugging Face T5 directory (config.json + model.safetensors)."""
  directory = epath.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  if "layers" in params["encoder"]:
    params = network.unscan_layer_params(params, config)
  tensors = {}
  for path, name, transpose in _name_pairs(config):
    value = np.asarray(_get(params, path), dtype=np.float32)
    tensors[name] = np.ascontiguousarray(value.T if transpose else value)
  (directory / "model.safetensors").write_bytes(
    safetensors.numpy.save(tensors, metadata={"format": "pt"})
  )
  _write_json(directory / "config.json", config_to_hf(config))
  _write_json(directory / "generation_config.json", GENERATION_CONFIG)
  _set_modes(directory)


def write_tokenizer(
  directory: str | epath.PathLike, spiece_model: str | None, *, extra_ids: int = 100
) -> str:
  """Writes the Hugging Face tokenizer files of a flan vocabulary; returns its HF class.

  Args:
    directory: the export directory.
    spiece_model: T5's SentencePiece model (a local path or a gfile URL) -> `spiece.model`,
      `tokenizer_config.json` and `special_tokens_map.json` for `T5Tokenizer`, the files
      its `save_pretrained` writes. None: seqio's byte vocabulary (UTF-8 byte + 3 after pad,
      eos, unk), which is ByT5's: `ByT5Tokenizer` with no sentinels encodes the same ids
      (except text that spells a special token, e.g. a literal "</s>", which it maps to that
      token while seqio encodes its bytes).
    extra_ids: the sentinels the SentencePiece vocabulary appends (seqio's extra_ids).
  """
  directory = epath.Path(directory)
  if spiece_model is None:
    tokenizer_class, extra = "ByT5Tokenizer", []
    config = {"tokenizer_class": tokenizer_class, "extra_ids": 0, **_SPECIAL_TOKENS}
  else:
    tokenizer_class = "T5Tokenizer"
    extra = [f"<extra_id_{i}>" for i in range(extra_ids)]
    if "://" in spiece_model or "://" in str(directory):
      import tensorflow as tf  # only remote paths need gfile

      tf.io.gfile.copy(spiece_model, str(directory / "spiece.model"), overwrite=True)
    else:
      shutil.copyfile(spiece_model, directory / "spiece.model")
    config = {
      "tokenizer_class": tokenizer_class,
      "extra_ids": extra_ids,
      "additional_special_tokens": extra,
      "legacy": True,
      **_SPECIAL_TOKENS,
    }
  _write_json(directory / "tokenizer_config.json", config)
  _write_json(
    directory / "special_tokens_map.json",
    {**_SPECIAL_TOKENS, **({"additional_special_tokens": extra} if extra else {})},
  )
  _set_modes(directory)
  return tokenizer_class


def _write_json(path: epath.Path, value: dict[str, Any]) -> None:
  path.write_text(json.dumps(value, indent=2) + "\n")


def _set_modes(directory: epath.Path) -> None:
  """Gives every file the mode a plain `open()` would (0644 under umask 022), as HF does.

  Only local directories (an object store has no modes).
  """
  if "://" in str(directory):
    return
  umask = os.umask(0)
  os.umask(umask)
  for path in directory.iterdir():
    if path.is_file():
      os.chmod(path, 0o666 & ~umask)
