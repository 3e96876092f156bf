"""Evaluation throughput: the evaluation before issue 15 against `ModelRunner`, in one run.

Rank classification (template 0) on the test splits of real NLI samples in
../shared/data/tfds, read from template 0's evaluated seqio task (tokenized with the T5
SentencePiece model) and scored through `flan.evaluation.holdout.evaluate_template`, with
a randomly initialised T5 1.1 model per size (configs/models/<size>.gin, float32). Two runners
score the same examples in one run:

  old  the method before issue 15, kept only here (`OldRunner`): batches in the split's
       order, every batch padded to the split's longest input and option, each input
       encoded once but its encoder output repeated for each of its K options, so every
       option row projects the cross-attention keys/values again and is padded to the
       longest option (`repeated_score_options`, the model's scorer of that time);
  new  `flan.evaluation.inference.ModelRunner`: examples sorted by length, each batch padded
       to its own longest row rounded to a bucket length, an example's options packed into
       one decoder row (`EncoderDecoderModel.score_options`).

Generation (greedy, `--decode_length` tokens) of the same prompts is timed the same way:
old = batches in order padded to the split's longest input, new = `ModelRunner.predict`.

Per size, task and method: prompts/s over the best warm pass, and over the median one (a
first pass compiles; then the two methods' passes alternate, so both see the same machine
load; on a shared machine other work only ever adds time, so the best pass is the closest to
the method's own cost, and the median shows the spread), the share of
encoder (and, for scoring, decoder) slots that hold real tokens, the number of compiled
shapes, and the largest difference between the two methods' per-example scores (for
generation: how many predictions are identical). `--profile` adds where a new scoring pass
spends its time: encoder, decoder stack, logits and log-softmax, host.

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
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from flan.data import tasks as tasks_lib
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
from flan.tokens import EOS_ID, PAD_ID

SHARED = ROOT.parent / "shared"
METHODS = ("old", "new")


def repeated_score_options(model: model_lib.EncoderDecoderModel, params, batch) -> jax.Array:
  """The scorer before issue 15: [E, K] option scores, the input encoded once, its encoder
  output repeated K times (each option row projects the cross-attention keys/values again).

  batch: {"encoder_input_tokens": [E, Li], "decoder_target_tokens": [E, K, Lt]}.
  """
  module = model.module
  enc = jnp.asarray(batch["encoder_input_tokens"])  # [E, Li]
  tgt = jnp.asarray(batch["decoder_target_tokens"])  # [E, K, Lt]
  e, k, lt = tgt.shape
  encoded = module.apply({"params": params}, enc, enable_dropout=False, method=module.encode)
  tgt = tgt.reshape(e * k, lt)  # [E*K, Lt]
  dec_in = jnp.pad(tgt[:, :-1], ((0, 0), (1, 0)))  # shifted right, PAD first
  logits = module.apply(
    {"params": params},
    jnp.repeat(encoded, k, axis=0),
    jnp.repeat(enc, k, axis=0),
    dec_in,
    tgt,
    enable_dropout=False,
    method=module.decode,
  )  # [E*K, Lt, V]
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
  picked = jnp.take_along_axis(log_probs, tgt[..., None], axis=-1)[..., 0]
  return jnp.sum(picked * (tgt != PAD_ID), axis=-1).reshape(e, k)


class OldRunner(inference.ModelRunner):
  """The evaluation before issue 15: batches in order, padded to the caller's lengths."""

  def __init__(self, model, mesh, batch_size):
    super().__init__(model, mesh, batch_size)
    self._score_shared = jax.jit(
      lambda params, batch: repeated_score_options(model, params, batch),
      out_shardings=NamedSharding(mesh, P()),
    )

  def score_options(self, params, inputs, options, lengths):
    li, lt = lengths
    k = max(len(o) for o in options)
    size = max(self._unit, self.batch_size // k // self._unit * self._unit)
    out = []
    for start in range(0, len(inputs), size):
      enc = inference._rows_array(inputs[start : start + size], li, size)  # pylint: disable=protected-access
      tgt = np.zeros((size, k, lt), np.int32)  # [E, K, Lt]
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
      real = [len(o) for opts in options[start : start + n] for o in opts]
      self.stats["decoder_tokens"] += sum(real)
      self.stats["decoder_slots"] += size * k * lt
    return out

  def predict(self, params, inputs, input_length, decode_length):
    out = []
    b = self.batch_size
    for start in range(0, len(inputs), b):
      enc = inference._rows_array(inputs[start : start + b], input_length, b)  # pylint: disable=protected-access
      blank = np.zeros((b, decode_length), np.int32)
      batch = {
        "encoder_input_tokens": enc,
        "decoder_input_tokens": blank,
        "decoder_target_tokens": blank,
        "decoder_loss_weights": blank,
      }
      with partitioning.activation_rules(self.mesh):
        tokens = np.asarray(self._predict(decode_length)(params, self._global(batch)))
      n = min(b, len(inputs) - start)
      for row in tokens[:n].tolist():
        row = row[: row.index(EOS_ID)] if EOS_ID in row else row
        out.append([t for t in row if t != PAD_ID])
      self.stats["predict_batches"] += 1
      self.stats["encoder_tokens"] += sum(len(x) for x in inputs[start : start + n])
      self.stats["encoder_slots"] += b * input_length
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


def _cache_size(fn) -> int:
  size = getattr(fn, "_cache_size", None)
  return int(size()) if size else 0


def _compiled(runner: inference.ModelRunner, task: str, decode_length: int) -> int:
  """Shapes compiled so far by the runner's jitted function of `task`."""
  if task == "score":
    return _cache_size(runner._score_shared)  # pylint: disable=protected-access
  return _cache_size(runner._predict(decode_length))  # pylint: disable=protected-access


def _prompts(data: dict, li: int) -> dict[str, tuple[list[list[int]], int]]:
  """Per dataset: template 0's tokenized inputs and the split's bucketed longest input."""
  out = {}
  for dataset, template in data.items():
    enc = [p.inputs.tolist() for p in template.splits["test"]]
    out[dataset] = (enc, inference.padded_length(max(len(e) for e in enc), li))
  return out


def load(datasets, lengths, max_examples, data_dir, vocabulary) -> dict:
  """Per dataset: template 0's `holdout.TemplateData` (the first test examples)."""
  config = tasks_lib.Config(data_dir=data_dir, vocabulary=vocabulary)
  out = {}
  for d in datasets:
    task = tasks_lib.evaluated_task(d, 0, config)
    prompts = holdout.read_prompts(task, "test", lengths, max_examples)
    out[d] = holdout.TemplateData(task, tasks_lib.evaluated_kind(d, 0, config), {"test": prompts})
  return out


def profile_scoring(model, params, runner, data, vocabulary, options, reps: int = 3) -> dict:
  """Seconds of a new scoring pass spent in the encoder, the decoder stack (cross-attention
  keys/values included), the logits layer and log-softmax, and on the host.

  The runner's batches of one pass are captured, then each piece, jitted on its own, runs on
  every batch `reps` times, the two interleaved; each batch counts its fastest run (other
  work on the machine only adds time). Host = the fastest whole pass - the fastest jitted
  calls of the runner's own function."""
  module = model.module
  batches = []
  real = runner._score_shared  # pylint: disable=protected-access

  def capture(p, batch):
    batches.append(batch)
    return real(p, batch)

  def one_pass():
    tick = time.perf_counter()
    for dataset, template in data.items():
      holdout.evaluate_template(
        runner, params, vocabulary, dataset, 0, template, "test", (), options
      )
    return time.perf_counter() - tick

  runner._score_shared = capture  # pylint: disable=protected-access
  try:
    one_pass()
  finally:
    runner._score_shared = real  # pylint: disable=protected-access
  passes = [one_pass() for _ in range(reps)]

  def encode(p, b):
    return module.apply(
      {"params": p}, b["encoder_input_tokens"], enable_dropout=False, method=module.encode
    )

  def hidden(p, b):
    """The decoder's final norm output: the whole pass but the logits layer (which jit then
    drops as unused) and log-softmax."""
    captured = {}

    def keep(fn, args, kwargs, context):
      out = fn(*args, **kwargs)
      if context.method_name == "__call__" and context.module.name == "decoder_norm":
        captured["x"] = out
      return out

    with nn.intercept_methods(keep):
      model.logits(p, b)
    return captured["x"]  # [E, Ld, embed]

  def runner_call(p, b):
    with partitioning.activation_rules(runner.mesh):
      return real(p, b)

  pieces = {"encoder": jax.jit(encode), "stack": jax.jit(hidden), "runner": runner_call}
  for fn in pieces.values():
    for b in batches:
      jax.block_until_ready(fn(params, b))
  best = {k: [float("inf")] * len(batches) for k in pieces}
  for _ in range(reps):
    for i, b in enumerate(batches):
      for k, fn in pieces.items():
        tick = time.perf_counter()
        jax.block_until_ready(fn(params, b))
        best[k][i] = min(best[k][i], time.perf_counter() - tick)
  t = {k: sum(v) for k, v in best.items()}
  return {
    "pass_s": min(passes),
    "encoder_s": t["encoder"],
    "decoder_stack_s": max(0.0, t["stack"] - t["encoder"]),
    "logits_and_log_softmax_s": max(0.0, t["runner"] - t["stack"]),
    "host_s": max(0.0, min(passes) - t["runner"]),
  }


def measure(size: str, data: dict, args, vocabulary) -> dict:
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
  runners = {
    "old": OldRunner(model, mesh, args.batch_size),
    "new": inference.ModelRunner(model, mesh, args.batch_size),
  }
  placed = runners["new"].place(params)
  prompts = _prompts(data, args.lengths[0])
  tasks = ["score"] + (["generate"] if args.decode_length else [])
  results = {(t, m): [] for t in tasks for m in METHODS}
  times = {(t, m): [] for t in tasks for m in METHODS}
  compiled = {(t, m): [] for t in tasks for m in METHODS}
  stats = {}

  def one_pass(task, name):
    runner = runners[name]
    runner.stats.clear()
    tick = time.perf_counter()
    per = []
    if task == "score":
      for dataset, template in data.items():
        _, records = holdout.evaluate_template(
          runner, placed, vocabulary, dataset, 0, template, "test", (), options
        )
        per += [r["scores"] for r in records]
    else:
      for enc, length in prompts.values():
        per += runner.predict(placed, enc, length, args.decode_length)
    times[task, name].append(time.perf_counter() - tick)
    compiled[task, name].append(_compiled(runner, task, args.decode_length))
    results[task, name] = per
    stats[task, name] = dict(runner.stats)

  # A first pass of each compiles; then the timed passes alternate, so both methods see the
  # same machine load.
  for _ in range(args.passes + 1):
    for task in tasks:
      for name in METHODS:
        one_pass(task, name)
  n = sum(len(t.splits["test"]) for t in data.values())
  out = {"size": size, "prompts": n}
  for task in tasks:
    row = {}
    for name in METHODS:
      if len(set(compiled[task, name])) != 1:
        raise RuntimeError(f"{task} {name}: a warm pass compiled again ({compiled[task, name]}).")
      warm_passes = times[task, name][1:]
      best, median = min(warm_passes), float(np.median(warm_passes))
      s = stats[task, name]
      row[name] = {
        "first_pass_s": times[task, name][0],
        "best_pass_s": best,
        "median_pass_s": median,
        "warm_passes_s": warm_passes,
        "prompts_per_s": n / best,
        "prompts_per_s_median": n / median,
        "real_encoder_fraction": s["encoder_tokens"] / s["encoder_slots"],
        "compiled_shapes": compiled[task, name][-1],
        "batches": s.get("score_batches", 0) + s.get("predict_batches", 0),
      }
      if s.get("decoder_slots"):
        row[name]["real_decoder_fraction"] = s["decoder_tokens"] / s["decoder_slots"]
      dec = row[name].get("real_decoder_fraction")
      print(
        f"[{size} {task}] {name}: {row[name]['prompts_per_s']:8.2f} prompts/s (best warm "
        f"pass {best:.2f} s, median {median:.2f} s, first {times[task, name][0]:.1f} s), "
        "real encoder tokens "
        f"{100 * row[name]['real_encoder_fraction']:.1f}%"
        + ("" if dec is None else f", real decoder tokens {100 * dec:.1f}%")
        + f", compiled shapes {row[name]['compiled_shapes']}",
        flush=True,
      )
    old, new = results[task, "old"], results[task, "new"]
    if task == "score":
      row["max_abs_score_difference"] = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(old, new)
      )
      agree = f"largest score difference {row['max_abs_score_difference']:.2e}"
    else:
      row["identical_predictions"] = sum(a == b for a, b in zip(old, new))
      agree = f"identical predictions {row['identical_predictions']}/{n}"
    row["speedup"] = row["new"]["prompts_per_s"] / row["old"]["prompts_per_s"]
    row["speedup_median"] = row["new"]["prompts_per_s_median"] / row["old"]["prompts_per_s_median"]
    print(
      f"[{size} {task}] new / old = {row['speedup']:.2f}x prompts/s (best passes; medians "
      f"{row['speedup_median']:.2f}x); {agree}",
      flush=True,
    )
    out[task] = row
  if args.profile:
    prof = profile_scoring(model, placed, runners["new"], data, vocabulary, options)
    out["profile_new_score"] = prof
    print(
      f"[{size} score] new pass {prof['pass_s']:.2f} s: encoder {prof['encoder_s']:.2f} s, "
      f"decoder stack {prof['decoder_stack_s']:.2f} s, logits + log-softmax "
      f"{prof['logits_and_log_softmax_s']:.2f} s, host {prof['host_s']:.2f} s",
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
  p.add_argument(
    "--decode_length", type=int, default=8, help="generated tokens (0: no generation rows)"
  )
  p.add_argument("--data_dir", default=str(SHARED / "data" / "tfds"))
  p.add_argument("--vocabulary", default=str(SHARED / "vocab" / "t5_spiece.model"))
  p.add_argument(
    "--passes", type=int, default=3, help="warm passes timed (after one that compiles)"
  )
  p.add_argument("--profile", action="store_true", help="where a new scoring pass spends time")
  p.add_argument("--out", default=None)
  args = p.parse_args(argv)
  args.lengths = [int(x) for x in args.lengths.split(",")]
  vocabulary = vocabularies.get_vocabulary(args.vocabulary)
  lengths = {"inputs": args.lengths[0], "targets": args.lengths[1]}
  data = load(args.datasets.split(","), lengths, args.max_examples, args.data_dir, vocabulary)
  print(
    f"{sum(len(t.splits['test']) for t in data.values())} prompts: "
    + ", ".join(f"{d} {len(t.splits['test'])}" for d, t in data.items()),
    flush=True,
  )
  rows = [measure(s, data, args, vocabulary) for s in args.sizes.split(",")]
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps({"rows": rows}, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
