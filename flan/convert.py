"""Converts T5 weights between Hugging Face directories, t5x checkpoints and flan checkpoints.

    # HF T5 / FLAN-T5 directory (config.json + model.safetensors) -> orbax params checkpoint
    python -m flan.convert hf_to_flan --hf_dir /path/flan-t5-small --out /tmp/flan_t5_small
    # t5x checkpoint_<step> directory (msgpack + TensorStore) -> orbax params checkpoint / HF
    python -m flan.convert t5x_to_flan --t5x_checkpoint /ckpts/flan_t5_small/checkpoint_1198000 \
        --out /tmp/flan_t5_small
    python -m flan.convert t5x_to_hf --t5x_checkpoint /ckpts/flan_t5_small/checkpoint_1198000 \
        --out /tmp/flan_t5_small_hf
    # flan checkpoint -> HF directory loadable by transformers' T5ForConditionalGeneration
    python -m flan.convert flan_to_hf --checkpoint /tmp/model_dir --out /tmp/hf_export \
        [--gin_file configs/models/small.gin]

`hf_to_flan` writes `{"params": ...}` with orbax's StandardCheckpointer plus `t5_config.json`.
`flan_to_hf` reads that, a trainer `checkpoint_<step>` directory, or a MODEL_DIR (its newest
checkpoint). The network config comes from `t5_config.json`, else from `--gin_file` (a model
gin), else from MODEL_DIR/config.gin written by training; a t5x checkpoint's config is read
off its parameters' shapes. Training and evaluation need no conversion: INITIAL_CHECKPOINT_PATH
and CHECKPOINT_PATH may name a Hugging Face directory or a t5x checkpoint directly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

import jax
import numpy as np

from flan import paths
from flan.model import hf, network
from flan.training import checkpoints

CONFIG_FILE = checkpoints.PARAMS_CONFIG_FILE


def hf_to_flan(hf_dir: str, out: str, *, scan_layers: bool = False) -> network.T5Config:
  """Imports a HF directory and saves its params as an orbax checkpoint at `out`."""
  config, params = hf.params_from_hf(hf_dir, scan_layers=scan_layers)
  return _save_params(config, params, out)


def t5x_to_flan(t5x_checkpoint: str, out: str, *, scan_layers: bool = False) -> network.T5Config:
  """Imports a t5x checkpoint's parameters and saves them as an orbax checkpoint at `out`."""
  from flan.model import t5x

  config, params = t5x.params_from_t5x(t5x_checkpoint, scan_layers=scan_layers)
  return _save_params(config, params, out)


def t5x_to_hf(t5x_checkpoint: str, out: str) -> network.T5Config:
  """Writes a t5x checkpoint's parameters as a Hugging Face T5 directory at `out`."""
  from flan.model import t5x

  config, params = t5x.params_from_t5x(t5x_checkpoint)
  hf.params_to_hf(config, params, out)
  return config


def _save_params(config: network.T5Config, params: dict, out: str) -> network.T5Config:
  """`{"params": params}` with orbax's StandardCheckpointer plus t5_config.json, at `out`."""
  import orbax.checkpoint as ocp

  out_path = paths.path(out)
  if out_path.exists():
    raise FileExistsError(f"--out {out_path} already exists; choose a new directory.")
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(out_path, {"params": params})
  checkpointer.wait_until_finished()
  (out_path / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
  return config


def _config_from_gin(files: Sequence[str], bindings: Sequence[str]) -> network.T5Config:
  """The T5Config a model gin (or a run's config.gin) builds."""
  import gin

  gin.parse_config_files_and_bindings(list(files), list(bindings), finalize_config=False)
  try:
    rate = gin.query_parameter("%DROPOUT_RATE")
  except ValueError:  # a gin file that binds T5Config directly
    rate = None
  if isinstance(rate, gin.config.ConfigurableReference):  # %gin.REQUIRED: no run gin set it
    gin.bind_parameter("%DROPOUT_RATE", 0.0)  # a model gin alone; conversion never drops out
  return gin.get_configurable(network.T5Config)()


def flan_to_hf(
  checkpoint: str, out: str, *, gin_files: Sequence[str] = (), gin_bindings: Sequence[str] = ()
) -> network.T5Config:
  """Exports a flan checkpoint's params as a Hugging Face T5 directory at `out`."""
  source = checkpoints.locate(checkpoint, "--checkpoint")
  if source.kind == checkpoints.HF:
    raise FileNotFoundError(f"--checkpoint {checkpoint} is already a Hugging Face directory.")
  if source.kind == checkpoints.T5X:
    return t5x_to_hf(checkpoint, out)
  if source.kind == checkpoints.PARAMS:
    config = network.T5Config(**json.loads((source.path / CONFIG_FILE).read_text()))
  elif gin_files:
    config = _config_from_gin(gin_files, gin_bindings)
  elif (source.model_dir / "config.gin").is_file():
    config = _config_from_gin([str(source.model_dir / "config.gin")], gin_bindings)
  else:
    raise FileNotFoundError(
      f"No network config for {checkpoint}: pass --gin_file with the model "
      "gin it was trained with (e.g. configs/models/small.gin)."
    )
  from flan.model import encoder_decoder, partitioning

  mesh = partitioning.make_mesh({"data": 1, "model": 1}, devices=jax.local_devices()[:1])
  params, _ = checkpoints.restore_params(
    encoder_decoder.EncoderDecoderModel(config), mesh, source.path, setting="--checkpoint"
  )
  hf.params_to_hf(config, jax.tree.map(np.asarray, params), out)
  return config


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
    prog="python -m flan.convert", description=__doc__.split("\n")[0]
  )
  commands = parser.add_subparsers(dest="command", required=True)
  to_flan = commands.add_parser("hf_to_flan", help="HF directory -> orbax params checkpoint")
  to_flan.add_argument("--hf_dir", required=True)
  to_flan.add_argument("--out", required=True)
  to_flan.add_argument(
    "--scan_layers",
    action="store_true",
    help="save the stacked layout for models trained with SCAN_LAYERS=True",
  )
  for name, what in (("t5x_to_flan", "orbax params checkpoint"), ("t5x_to_hf", "HF directory")):
    t5x_cmd = commands.add_parser(name, help=f"t5x checkpoint_<step> directory -> {what}")
    t5x_cmd.add_argument("--t5x_checkpoint", required=True)
    t5x_cmd.add_argument("--out", required=True)
    if name == "t5x_to_flan":
      t5x_cmd.add_argument(
        "--scan_layers",
        action="store_true",
        help="save the stacked layout for models trained with SCAN_LAYERS=True",
      )
  to_hf = commands.add_parser("flan_to_hf", help="flan checkpoint -> HF directory")
  to_hf.add_argument("--checkpoint", required=True)
  to_hf.add_argument("--out", required=True)
  to_hf.add_argument("--gin_file", action="append", default=[])
  to_hf.add_argument("--gin_bindings", action="append", default=[])
  args = parser.parse_args(argv)
  try:
    if args.command == "hf_to_flan":
      config = hf_to_flan(args.hf_dir, args.out, scan_layers=args.scan_layers)
    elif args.command == "t5x_to_flan":
      config = t5x_to_flan(args.t5x_checkpoint, args.out, scan_layers=args.scan_layers)
    elif args.command == "t5x_to_hf":
      config = t5x_to_hf(args.t5x_checkpoint, args.out)
    else:
      config = flan_to_hf(
        args.checkpoint, args.out, gin_files=args.gin_file, gin_bindings=args.gin_bindings
      )
  except (FileNotFoundError, FileExistsError, ValueError, checkpoints.CheckpointError) as e:
    sys.exit(f"flan.convert {args.command}: {e}")
  print(f"wrote {args.out} ({config})")


if __name__ == "__main__":
  main()
