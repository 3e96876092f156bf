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
        [--gin_file configs/models/small.gin] [--vocabulary ../shared/vocab/t5_spiece.model] \
        [--overwrite]

`hf_to_flan` writes `{"params": ...}` with orbax's StandardCheckpointer plus `t5_config.json`.
`flan_to_hf` reads that, a trainer `checkpoint_<step>` directory, or a MODEL_DIR (its newest
checkpoint that verifies; an older good one if the newest is corrupt). The network config
comes from `t5_config.json`, else from `--gin_file` (a model gin), else from
MODEL_DIR/model_config.json recorded by training; a t5x checkpoint's config is read off its
parameters' shapes. A directory's `config.gin` is never parsed: gin can call any function, and
a checkpoint directory is data. The export is a complete HF model: weights, config.json,
generation_config.json and the tokenizer of the run's vocabulary (`--vocabulary`, else the
VOCABULARY those gin files or that record set: T5Tokenizer files for a SentencePiece model,
ByT5Tokenizer's for the byte vocabulary). `--out` must not hold a model already, unless
`--overwrite`. Training and evaluation need no conversion: INITIAL_CHECKPOINT_PATH and
CHECKPOINT_PATH may name a Hugging Face directory or a t5x checkpoint directly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from etils import epath

from flan import paths
from flan.errors import EXIT_USER_ERROR, UserError
from flan.model import hf, network
from flan.training import checkpoints

CONFIG_FILE = checkpoints.PARAMS_CONFIG_FILE
_UNKNOWN = object()  # no vocabulary was given or recorded
BYTE = "byte"


def _check_out(out: epath.Path, overwrite: bool) -> None:
  """Refuses an `--out` that exists and is not empty, unless `overwrite` (then clears it)."""
  if out.exists() and (not out.is_dir() or any(out.iterdir())):
    if not overwrite:
      raise UserError(
        f"--out {out} already exists and is not empty; choose a new directory, "
        "or pass --overwrite to replace it."
      )
    if out.is_dir():
      out.rmtree()
    else:
      out.unlink()


def hf_to_flan(
  hf_dir: str, out: str, *, scan_layers: bool = False, overwrite: bool = False
) -> network.T5Config:
  """Imports a HF directory and saves its params as an orbax checkpoint at `out`."""
  out_path = paths.path(out)
  _check_out(out_path, overwrite)  # before reading: a refused run costs nothing
  config, params = hf.params_from_hf(hf_dir, scan_layers=scan_layers)
  return _save_params(config, params, out_path)


def t5x_to_flan(
  t5x_checkpoint: str, out: str, *, scan_layers: bool = False, overwrite: bool = False
) -> network.T5Config:
  """Imports a t5x checkpoint's parameters and saves them as an orbax checkpoint at `out`."""
  from flan.model import t5x

  out_path = paths.path(out)
  _check_out(out_path, overwrite)
  config, params = t5x.params_from_t5x(t5x_checkpoint, scan_layers=scan_layers)
  return _save_params(config, params, out_path)


def t5x_to_hf(
  t5x_checkpoint: str, out: str, *, vocabulary: str | None = None, overwrite: bool = False
) -> network.T5Config:
  """Writes a t5x checkpoint's parameters as a Hugging Face T5 directory at `out`.

  The tokenizer is written only for `vocabulary` (a t5x directory's config.gin is not
  parsed): a SentencePiece model path, or "byte".
  """
  from flan.model import t5x

  out_path = paths.path(out)
  spiece = _UNKNOWN if vocabulary is None else _spiece_model(vocabulary)
  _check_out(out_path, overwrite)
  config, params = t5x.params_from_t5x(t5x_checkpoint)
  _write_hf(config, params, out_path, spiece)
  return config


def _save_params(config: network.T5Config, params: dict, out_path: epath.Path) -> network.T5Config:
  """`{"params": params}` with orbax's StandardCheckpointer plus t5_config.json, at `out`."""
  import orbax.checkpoint as ocp

  if out_path.exists():
    out_path.rmdir()  # an empty directory: orbax wants to create it
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(out_path, {"params": params})
  checkpointer.wait_until_finished()
  (out_path / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
  return config


def _config_from_record(model_dir: epath.Path) -> tuple[network.T5Config | None, Any]:
  """(T5Config, vocabulary path) recorded by training in MODEL_DIR/model_config.json.

  Plain JSON: (None, _UNKNOWN) when the MODEL_DIR has no record.
  """
  from flan.training import run_record

  record = run_record.read(model_dir)
  if record is None:
    return None, _UNKNOWN
  fields = dict(record["model"])
  if "mlp_activations" in fields:
    fields["mlp_activations"] = tuple(fields["mlp_activations"])
  try:
    config = network.T5Config(**fields)
  except TypeError as e:
    raise UserError(
      f"{model_dir / run_record.RECORD_NAME} does not describe a T5Config ({e}); "
      "pass --gin_file with the model gin instead."
    ) from None
  return config, record.get("vocabulary", {}).get("path", _UNKNOWN)


def _config_from_gin(files: Sequence[str], bindings: Sequence[str]) -> network.T5Config:
  """The T5Config a model gin (the user's own files, never one found in a model directory)."""
  import gin

  gin.parse_config_files_and_bindings(list(files), list(bindings), finalize_config=False)
  try:
    rate = gin.query_parameter("%DROPOUT_RATE")
  except ValueError:  # a gin file that binds T5Config directly
    rate = None
  if isinstance(rate, gin.config.ConfigurableReference):  # %gin.REQUIRED: no run gin set it
    gin.bind_parameter("%DROPOUT_RATE", 0.0)  # a model gin alone; conversion never drops out
  return gin.get_configurable(network.T5Config)()


def _gin_vocabulary() -> Any:
  """The VOCABULARY macro of the parsed gin (None: bytes), or _UNKNOWN when unset."""
  import gin

  try:
    value = gin.query_parameter("VOCABULARY/gin.macro.value")
  except ValueError:
    return _UNKNOWN
  return value if value is None or isinstance(value, str) else _UNKNOWN


def _spiece_model(vocabulary: str | None) -> str | None:
  """The SentencePiece model path of a VOCABULARY value (None for the byte vocabulary)."""
  if vocabulary is None or vocabulary == BYTE:
    return None
  path = os.path.expanduser(vocabulary)
  if "://" not in path and not os.path.isfile(path):
    raise UserError(
      f"Vocabulary {vocabulary!r} not found; pass --vocabulary with the run's "
      "SentencePiece model (or --vocabulary byte)."
    )
  return path


def _write_hf(config: network.T5Config, params: Any, out_path: epath.Path, spiece: Any) -> None:
  """Weights, config.json, generation_config.json and (unless `spiece` is _UNKNOWN) tokenizer."""
  out = str(out_path)
  hf.params_to_hf(config, params, out)
  if spiece is _UNKNOWN:
    logging.warning(
      "No tokenizer written to %s: the run's vocabulary is unknown; rerun with "
      "--vocabulary (its spiece.model, or byte).",
      out,
    )
    return
  from flan.data import vocabularies  # seqio: only when a tokenizer is written

  tokenizer = hf.write_tokenizer(out, spiece, extra_ids=vocabularies.EXTRA_IDS)
  if spiece is None:
    logging.info(
      "Byte vocabulary: the export's tokenizer is %s (seqio's ByteVocabulary "
      "ids, UTF-8 bytes + 3); HF's T5Tokenizer does not apply.",
      tokenizer,
    )
  logging.info("Wrote %s: weights, config.json, generation_config.json, %s files.", out, tokenizer)


def flan_to_hf(
  checkpoint: str,
  out: str,
  *,
  gin_files: Sequence[str] = (),
  gin_bindings: Sequence[str] = (),
  vocabulary: str | None = None,
  overwrite: bool = False,
) -> network.T5Config:
  """Exports a flan (or t5x) checkpoint as a complete Hugging Face T5 directory at `out`.

  Args:
    checkpoint: see the module docstring.
    out: the export directory (refused if it holds anything, unless `overwrite`).
    gin_files: the model gin (and run gin) when the checkpoint has no t5_config.json.
    gin_bindings: bindings applied after `gin_files`.
    vocabulary: the run's VOCABULARY: a SentencePiece model path or "byte"; None: the one
      the gin files or MODEL_DIR/model_config.json set, else the export gets no tokenizer
      (a warning says so).
    overwrite: replace an existing `out`.
  """
  out_path = paths.path(out)
  source = checkpoints.locate(checkpoint, "--checkpoint")
  if source.kind == checkpoints.HF:
    raise UserError(f"--checkpoint {checkpoint} is already a Hugging Face directory.")
  if source.kind == checkpoints.T5X:
    return t5x_to_hf(str(source.path), out, vocabulary=vocabulary, overwrite=overwrite)
  recorded, config = _UNKNOWN, None
  if source.kind == checkpoints.PARAMS:
    config = network.T5Config(**json.loads((source.path / CONFIG_FILE).read_text()))
  elif gin_files:  # the user's own gin files, never one found in a model directory
    config = _config_from_gin(gin_files, gin_bindings)
    recorded = _gin_vocabulary()
  elif source.model_dir is not None:
    config, recorded = _config_from_record(source.model_dir)
  if config is None:
    raise UserError(
      f"No network config for {checkpoint} (no t5_config.json or "
      "model_config.json): pass --gin_file with the model gin it was trained "
      "with (e.g. configs/models/small.gin)."
    )
  if vocabulary is not None:
    recorded = vocabulary
  spiece = _UNKNOWN if recorded is _UNKNOWN else _spiece_model(recorded)
  _check_out(out_path, overwrite)  # before reading: a refused run costs nothing
  from flan.model import encoder_decoder, partitioning

  mesh = partitioning.make_mesh({"data": 1, "model": 1}, devices=jax.local_devices()[:1])
  # The newest checkpoint that verifies against its manifest (an older good one otherwise).
  params, _ = checkpoints.restore_params(
    encoder_decoder.EncoderDecoderModel(config), mesh, checkpoint, setting="--checkpoint"
  )
  _write_hf(config, jax.tree.map(np.asarray, params), out_path, spiece)
  return config


class UserExit(SystemExit):
  """Exit status EXIT_USER_ERROR after the one `error:` line; str() is that line."""

  def __init__(self, line: str) -> None:
    super().__init__(EXIT_USER_ERROR)
    self.line = line

  def __str__(self) -> str:
    return self.line


def _exit_user_error(command: str, e: BaseException) -> None:
  line = f"error: flan.convert {command}: {getattr(e, 'message', None) or e}"
  print(line, file=sys.stderr)
  raise UserExit(line) from None


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
    prog="python -m flan.convert", description=__doc__.split("\n")[0]
  )
  commands = parser.add_subparsers(dest="command", required=True)
  to_flan = commands.add_parser("hf_to_flan", help="HF directory -> orbax params checkpoint")
  to_flan.add_argument("--hf_dir", required=True)
  to_flan.add_argument("--out", required=True)
  to_flan.add_argument("--overwrite", action="store_true", help="replace an existing --out")
  to_flan.add_argument(
    "--scan_layers",
    action="store_true",
    help="save the stacked layout for models trained with SCAN_LAYERS=True",
  )
  for name, what in (("t5x_to_flan", "orbax params checkpoint"), ("t5x_to_hf", "HF directory")):
    t5x_cmd = commands.add_parser(name, help=f"t5x checkpoint_<step> directory -> {what}")
    t5x_cmd.add_argument("--t5x_checkpoint", required=True)
    t5x_cmd.add_argument("--out", required=True)
    t5x_cmd.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    if name == "t5x_to_flan":
      t5x_cmd.add_argument(
        "--scan_layers",
        action="store_true",
        help="save the stacked layout for models trained with SCAN_LAYERS=True",
      )
    else:
      t5x_cmd.add_argument(
        "--vocabulary",
        help="the run's VOCABULARY for the export's tokenizer: its spiece.model, or 'byte' "
        "(default: no tokenizer; a t5x directory's config.gin is not parsed)",
      )
  to_hf = commands.add_parser("flan_to_hf", help="flan checkpoint -> HF directory")
  to_hf.add_argument("--checkpoint", required=True)
  to_hf.add_argument("--out", required=True)
  to_hf.add_argument("--gin_file", action="append", default=[])
  to_hf.add_argument("--gin_bindings", action="append", default=[])
  to_hf.add_argument(
    "--vocabulary",
    help="the run's VOCABULARY: its spiece.model, or 'byte' "
    "(default: what the gin files or the run's model_config.json set)",
  )
  to_hf.add_argument("--overwrite", action="store_true", help="replace an existing --out")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  logging.getLogger("absl").setLevel(logging.WARNING)  # orbax's per-read chatter
  try:
    if args.command == "hf_to_flan":
      config = hf_to_flan(
        args.hf_dir, args.out, scan_layers=args.scan_layers, overwrite=args.overwrite
      )
    elif args.command == "t5x_to_flan":
      config = t5x_to_flan(
        args.t5x_checkpoint, args.out, scan_layers=args.scan_layers, overwrite=args.overwrite
      )
    elif args.command == "t5x_to_hf":
      config = t5x_to_hf(
        args.t5x_checkpoint, args.out, vocabulary=args.vocabulary, overwrite=args.overwrite
      )
    else:
      config = flan_to_hf(
        args.checkpoint,
        args.out,
        gin_files=args.gin_file,
        gin_bindings=args.gin_bindings,
        vocabulary=args.vocabulary,
        overwrite=args.overwrite,
      )
  except UserError as e:  # one line; anything else is a bug and keeps its traceback
    _exit_user_error(args.command, e)
  except (ValueError, FileNotFoundError) as e:
    if not args.command.startswith("t5x_"):
      raise
    _exit_user_error(args.command, e)  # flan.model.t5x: not a t5x checkpoint, missing arrays
  print(f"wrote {args.out} ({config})")


if __name__ == "__main__":
  main()
