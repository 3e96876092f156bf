"""Evaluation throughput: length-sorted, bucketed batches against batches padded to the split.

Rank classification (template 0) on the test splits of real NLI samples in
../shared/data/tfds, through `flan.evaluation.holdout.evaluate_template`, tokenized with the T5
SentencePiece model, with a randomly initialised T5 1.1 model per size (configs/models/<size>.gin,
float32). Two runners score the same examples in one run:

  padded  the previous method, kept only here: batches in the split's order, every batch
          padded to the split's longest input and option (`PaddedRunner`);
  sorted  `flan.evaluation.inference.ModelRunner`: examples sorted by length, each batch padded
          to its own longest row rounded to a bucket length.

Per size and method: prompts/s over the median warm pass (a first pass compiles; then the
two methods' passes alternate, so both see the same machine load), the share of encoder
slots that hold real tokens, the number of compiled shapes, and the largest difference
between the two methods' per-example scores.

  .venv/bin/python scripts/benchmark_eval.py --out /tmp/bench_eval.json
  .venv/bin/python scripts/benchmark_eval.py --sizes tiny --max_examples 32
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gin
import jax
import numpy as np

from flan.data import examples as examples_lib
from flan.data import vocabularies
from flan.evaluation import (
  holdout,
  inference,
)
from flan.model import encoder_decoder as model_lib
from flan.model import (
  network,
  partitioning,
)

SHARED = ROOT.parent / "shared"


class PaddedRunner(inference.ModelRunner):
  """The previous rank classification: batches in order, padded to the caller's lengths."""

  def score_options(self, params, inputs, options, lengths):
    li, lt = lengths
    k = max(len(o) for o in options)
    size = max(self._unit, self.batch_size // k // self._unit * self._unit)
    out = []
    for start in range(0, len(inputs), size):
      enc = inference._rows_array(inputs[start : start + size], li, size)  # pylint: disable=protected-access
      tgt = np.zeros((size, k, lt), np.int32)
      for e in range(size):
        src = start + e if start + e < len(options) else start
        for j, o in enumerate(options[src]):
          tgt[e, j, : len(o)] = o
      batch = {"encoder_input_tokens": enc, "decoder_target_tokens": tgt}
      with partitioning.activation_rules(self.mesh):
        scores = np.asarray(self._score_shared(params, self._global(batch)))  # pylint: disable=protected-access
      n = min(size, len(inputs) - start)
      out.extend(scores[e, : len(options[start + e])].tolist() for e in range(n))
      self.stats["score_batches"] += 1
      self.stats["encoder_tokens"] += sum(len(x) for x in inputs[start : start + n])
      self.stats["encoder_slots"] += size * li
    return out


def model_from_gin(size: str) -> model_lib.EncoderDecoderModel:
  path = ROOT / "configs" / "models" / f"{size}.gin"
  gin.clear_config()
  gin.parse_config_files_and_bindings(
    [str(path)], ["ACTIVATION_DTYPE = 'float32'", "DROPOUT_RATE = 0.0"]
  )
  config = network.T5Config(**gin.get_bindings("flan.model.network.T5Config"))
  kwargs = {
    k: v
    for k, v in gin.get_bindings("flan.model.encoder_decoder.EncoderDecoderModel").items()
    if k != "config"
  }
  gin.clear_config()
  return model_lib.EncoderDecoderModel(config, **kwargs)


def _compiled(runner: inference.ModelRunner) -> int:
  fn = runner._score_shared if runner.share_encoder else runner._score  # pylint: disable=protected-access
  size = getattr(fn, "_cache_size", None)
  return int(size()) if size else -1


def measure(size: str, data: dict, args, tokenizer) -> dict:
  model = model_from_gin(size)
  mesh = partitioning.make_mesh({"data": 1, "model": 1}, devices=jax.devices()[:1])
  shapes = {
    "encoder_input_tokens": (1, 8),
    "decoder_input_tokens": (1, 8),
    "decoder_target_tokens": (1, 8),
    "decoder_loss_weights": (1, 8),
  }
  params = jax.jit(lambda rng: model.init(rng, shapes))(jax.random.PRNGKey(0))
  options = holdout.EvalOptions({"inputs": args.lengths[0], "targets": args.lengths[1]})
  out = {"size": size}
  runners = {
    "padded": PaddedRunner(model, mesh, args.batch_size),
    "sorted": inference.ModelRunner(model, mesh, args.batch_size),
  }
  placed = runners["sorted"].place(params)
  scores = {}
  times = {name: [] for name in runners}
  compiled = {name: [] for name in runners}

  def one_pass(name):
    runner = runners[name]
    runner.stats.clear()
    tick = time.perf_counter()
    per = []
    for dataset, rows in data.items():
      _, records = holdout.evaluate_template(
        runner, placed, tokenizer, dataset, 0, rows, [], options
      )
      per += [r["scores"] for r in records]
    times[name].append(time.perf_counter() - tick)
    compiled[name].append(_compiled(runner))
    scores[name] = per

  # A first pass of each compiles; then the timed passes alternate, so both methods see the
  # same machine load.
  for _ in range(args.passes + 1):
    for name in runners:
      one_pass(name)
  prompts = sum(len(rows) for rows in data.values())
  for name, runner in runners.items():
    if len(set(compiled[name])) != 1:
      raise RuntimeError(f"{name}: a warm pass compiled again ({compiled[name]}).")
    warm = sorted(times[name][1:])[len(times[name][1:]) // 2]  # median warm pass
    stats = dict(runner.stats)
    out[name] = {
      "first_pass_s": times[name][0],
      "warm_pass_s": warm,
      "warm_passes_s": times[name][1:],
      "prompts_per_s": prompts / warm,
      "real_encoder_fraction": stats["encoder_tokens"] / stats["encoder_slots"],
      "compiled_shapes": compiled[name][-1],
      "batches": stats["score_batches"],
    }
    print(
      f"[{size}] {name:<6}: {out[name]['prompts_per_s']:7.2f} prompts/s (median warm pass "
      f"{warm:.1f} s, first {times[name][0]:.1f} s), real encoder tokens "
      f"{100 * out[name]['real_encoder_fraction']:.1f}%, compiled shapes "
      f"{out[name]['compiled_shapes']}",
      flush=True,
    )
  diff = max(
    float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
    for a, b in zip(scores["padded"], scores["sorted"])
  )
  out["max_abs_score_difference"] = diff
  out["speedup"] = out["sorted"]["prompts_per_s"] / out["padded"]["prompts_per_s"]
  print(
    f"[{size}] sorted / padded = {out['speedup']:.2f}x prompts/s; largest score "
    f"difference {diff:.2e}",
    flush=True,
  )
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--sizes", default="tiny,small")
  p.add_argument("--datasets", default="rte,anli,snli", help="NLI datasets (test splits)")
  p.add_argument("--max_examples", type=int, default=64, help="per dataset")
  p.add_argument("--batch_size", type=int, default=32)
  p.add_argument("--lengths", default="1024,64", help="caps: inputs,targets")
  p.add_argument("--data_dir", default=str(SHARED / "data" / "tfds"))
  p.add_argument("--vocabulary", default=str(SHARED / "vocab" / "t5_spiece.model"))
  p.add_argument(
    "--passes", type=int, default=2, help="warm passes timed (after one that compiles)"
  )
  p.add_argument("--out", default=None)
  args = p.parse_args(argv)
  args.lengths = [int(x) for x in args.lengths.split(",")]
  data = {
    d: examples_lib.load_examples(d, "test", args.data_dir)[: args.max_examples]
    for d in args.datasets.split(",")
  }
  tokenizer = inference.Tokenizer(vocabularies.get_vocabulary(args.vocabulary))
  print(
    f"{sum(map(len, data.values()))} prompts: "
    + ", ".join(f"{d} {len(r)}" for d, r in data.items()),
    flush=True,
  )
  rows = [measure(s, data, args, tokenizer) for s in args.sizes.split(",")]
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps({"rows": rows}, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
