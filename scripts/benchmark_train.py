"""Training-throughput benchmark on FLAN examples: flan's train step against Hugging Face T5.

The workload is a FLAN training mixture (default `flan_holdout_nli_train`) over the TFDS
samples in ../shared/data/tfds, tokenized with the T5 SentencePiece model; without them, the
long-tailed synthetic lengths of scripts/benchmark_data.py. From the same example stream:

* flan packed: rows from `flan.data.input_pipeline.make_train_iterator` (first-fit-decreasing
  packing), what `python -m flan.train` trains on;
* flan padded / peer padded: one example per row, padded to the row lengths (the same
  batches for both frameworks; Hugging Face's `padding="max_length"`);
* peer dynamic: one example per row, each batch padded to its longest example (rounded up to
  a multiple of 8), what `DataCollatorForSeq2Seq` does. The peer cannot pack.

For each T5 1.1 size (configs/models/<size>.gin, read through gin) it reports step time, real
(non-padding) input + target tokens per second, the non-padding share of the batch, model FLOPs
utilisation, peak memory, and the ratios of our tokens/s to the peer's. The issue's comparison
is flan packed against peer padded at the same batch and lengths.

* Our step is the real `flan.training.train_step.make_train_step` (flan's Adafactor, state
  donated, batches
  already on device, one `block_until_ready` per timing window).
* MFU: `flan.training.flops.train_step_flops` (encoder weights x input tokens, decoder and
  logits weights
  x target tokens, cross-attention K/V x input tokens, attention score/value products; 3 x
  forward; padding slots included) per second, divided by a matmul peak measured in the same
  run on the same devices ([devices, n, n] products in the activation dtype with float32
  accumulation, sampled before and after every window; the median).
* Peak memory: the device's `memory_stats()` peak when it has one, else the compiled step's
  XLA buffer plan (arguments + outputs - donated + temporaries).
* The peer (extra `[bench]`, scripts/benchmark_peer.py) runs in a child process of its own,
  its steps after each of our windows, in the same activation dtype.
* Timing: in every window each run (ours packed and padded, the peer's padded and dynamic)
  steps once through all `--num_batches` batches of its layout, so ours and the peer's are
  measured on the same examples, each batch weighted alike.

  .venv/bin/python scripts/benchmark_train.py --sizes tiny,small --out /tmp/bench_train.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import statistics
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchmark_data
import benchmark_peer
import gin
import jax
import jax.numpy as jnp
import numpy as np

from flan.data import (
  input_pipeline,
  packing,
)
from flan.model import (
  attention,
  network,
  partitioning,
)
from flan.model import config as model_config
from flan.model import encoder_decoder as model_lib
from flan.training import flops as flops_lib
from flan.training import optimizer as optimizer_lib
from flan.training import train_step as trainer

PAD = 0
SHARED = ROOT.parent / "shared"


# ---------------------------------------------------------------------------- configuration


def model_from_gin(
  size: str, *, dtype: str, scan_layers: bool, remat_policy: str, attention: str = "auto"
) -> tuple[network.T5Config, dict[str, Any]]:
  """The size's `T5Config` and model keyword arguments, as configs/models/<size>.gin binds them."""
  path = ROOT / "configs" / "models" / f"{size}.gin"
  if not path.exists():
    known = sorted(p.stem for p in (ROOT / "configs" / "models").glob("*.gin"))
    raise SystemExit(f"--sizes: no model config {path}; known sizes: {', '.join(known)}.")
  gin.clear_config()
  gin.parse_config_files_and_bindings(
    [str(path)],
    [
      f"ACTIVATION_DTYPE = {dtype!r}",
      f"SCAN_LAYERS = {scan_layers}",
      f"REMAT_POLICY = {remat_policy!r}",
      "DROPOUT_RATE = 0.0",
      f"network.T5Config.attention = {attention!r}",
    ],
  )
  config = network.T5Config(**gin.get_bindings("flan.model.network.T5Config"))
  bindings = gin.get_bindings("flan.model.encoder_decoder.EncoderDecoderModel")
  kwargs = {k: v for k, v in bindings.items() if k != "config"}
  gin.clear_config()
  return config, kwargs


# ---------------------------------------------------------------------------- measurements


def process_peak_rss(reset: bool = False) -> float:
  """Peak resident set size in bytes (VmHWM; `reset=True` restarts it, Linux only)."""
  if reset:
    try:
      with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    except OSError:
      pass
  peak = benchmark_peer.peak_rss()
  if peak == peak:  # not NaN
    return peak
  scale = 1 if sys.platform == "darwin" else 1024
  return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


class MatmulPeak:
  """FLOP/s of an [n, n] @ [n, n] product on every device at once.

  `chain` products per call amortise the dispatch. Samples are taken before the runs and
  after every timing window, so a run's MFU divides by the peak the machine offered at the
  same time (a shared machine's load drifts); the median of those samples is used.
  """

  def __init__(self, mesh: jax.sharding.Mesh, dtype: str, n: int, chain: int = 4):
    self.n, self.dtype, self.chain, self.devices = n, dtype, chain, mesh.devices.size
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(mesh.axis_names))
    key = jax.random.PRNGKey(0)
    shape = (self.devices, n, n)

    def operand(k):  # the cast comes last: dividing by a numpy float64 would promote to float32
      return jax.device_put((jax.random.normal(k, shape) / np.sqrt(n)).astype(dtype), sharding)

    self.a, self.b = operand(key), operand(jax.random.fold_in(key, 1))

    spec = jax.sharding.PartitionSpec(mesh.axis_names)

    def local(a, b):  # one plain [n, n] @ [n, n] per device: XLA:CPU's bfloat16 kernel only
      a, b = a[0], b[0]  # takes 2-D products, and float32 accumulation is its fastest form
      for _ in range(chain):
        a = jnp.dot(a, b, preferred_element_type=jnp.float32).astype(a.dtype)
      return a[None]

    self.products = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(spec, spec), out_specs=spec))
    products = self.products
    jax.block_until_ready(products(self.a, self.b))  # compile

  def sample(self, reps: int = 2) -> tuple[float, float]:
    """Best FLOP/s over `reps` calls: per wall second, and per process CPU second."""
    best, best_cpu = float("inf"), float("inf")
    for _ in range(reps):
      t0, c0 = time.perf_counter(), time.process_time()
      jax.block_until_ready(self.products(self.a, self.b))
      best = min(best, time.perf_counter() - t0)
      best_cpu = min(best_cpu, time.process_time() - c0)
    work = 2.0 * self.n**3 * self.chain * self.devices
    return work / best, work / max(best_cpu, 1e-9)

  def describe(self) -> dict[str, Any]:
    return {"n": self.n, "dtype": self.dtype, "devices": self.devices, "chain": self.chain}


class OursRunner:
  """flan's real train step (`trainer.make_train_step`) on pre-placed (prefetched) batches."""

  def __init__(
    self,
    config: network.T5Config,
    model_kwargs: dict[str, Any],
    batches: list[dict],
    mesh: jax.sharding.Mesh,
    warmup: int,
  ):
    model = model_lib.EncoderDecoderModel(config, **model_kwargs)
    tx, schedule = optimizer_lib.make_optimizer(
      base_learning_rate=1e-3, param_axes=model.param_logical_specs()
    )
    shapes = {k: v.shape for k, v in batches[0].items()}
    self.state, shardings = trainer.create_train_state(
      model, tx, mesh, jax.random.PRNGKey(0), shapes
    )
    self.step = trainer.make_train_step(
      model, tx, mesh=mesh, shardings=shardings, schedule=schedule
    )
    self.batches = [partitioning.shard_batch(b, mesh) for b in batches]  # on device already
    self.rng = jax.random.PRNGKey(1)
    self.mesh, self.i = mesh, 0
    with partitioning.activation_rules(mesh):
      t0 = time.perf_counter()
      compiled = self.step.jitted.lower(self.state, self.batches[0], self.rng).compile()
      self.compile_s = time.perf_counter() - t0
    self.memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    self.xla_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    self.run(1 + warmup)

  def run(self, steps: int) -> tuple[float, float, list[int]]:
    """(wall, process CPU) seconds of `steps` steps dispatched back to back with one sync at
    the end, and the indices of the batches they trained on."""
    t0, c0 = time.perf_counter(), time.process_time()
    used = []
    for _ in range(steps):
      used.append(self.i % len(self.batches))
      self.state, self.metrics = self.step(self.state, self.batches[used[-1]], self.rng)
      self.i += 1
    jax.block_until_ready((self.state, self.metrics))
    return time.perf_counter() - t0, time.process_time() - c0, used

  def peak_memory(self) -> tuple[float, str]:
    """(bytes, source): the allocator's peak when the device reports one, else XLA's plan."""
    stats = getattr(self.mesh.devices.flat[0], "memory_stats", lambda: None)()
    if stats and "peak_bytes_in_use" in stats:
      return float(stats["peak_bytes_in_use"]), "device peak_bytes_in_use"
    m = self.memory
    planned = (
      m.argument_size_in_bytes
      + m.output_size_in_bytes
      - m.alias_size_in_bytes
      + m.temp_size_in_bytes
    )
    return float(planned), "XLA buffers (arguments + outputs - donated + temporaries)"

  def loss(self) -> float:
    return float(jax.device_get(self.metrics["loss"]))


# ---------------------------------------------------------------------------- workload


def real_tokens(batch: dict[str, np.ndarray]) -> int:
  """Non-padding input tokens + target tokens of a batch."""
  return int((batch["encoder_input_tokens"] != PAD).sum() + batch["decoder_loss_weights"].sum())


def non_padding(batches: list[dict[str, np.ndarray]]) -> float:
  """Real tokens / token slots, over all the batches."""
  slots = sum(b["encoder_input_tokens"].size + b["decoder_target_tokens"].size for b in batches)
  return sum(real_tokens(b) for b in batches) / slots


def stream_name(args: argparse.Namespace) -> tuple[str, str]:
  """(seqio mixture or task to stream, its description): FLAN over ../shared, else synthetic."""
  have_data = pathlib.Path(args.data_dir).is_dir() and pathlib.Path(args.vocab).is_file()
  if have_data and not args.synthetic:
    from flan.data import tasks  # TFDS + seqio registration; only needed for real data

    tasks.register(data_dir=args.data_dir, vocabulary=args.vocab)
    name, used, _ = benchmark_data.prepared_mixture(args.mixture, args.data_dir)
    return name, f"{args.mixture} over {args.data_dir} ({len(used)} datasets prepared)"
  if not args.synthetic:
    print(
      f"no FLAN data at {args.data_dir} or no vocabulary at {args.vocab}: using synthetic "
      "long-tailed lengths (pass --data_dir / --vocab for FLAN examples)"
    )
  inputs, targets = benchmark_data.synthetic_examples(args.synthetic_examples, args.seed)
  benchmark_data.register_in_memory("bench_train_synthetic", inputs, targets)
  return (
    "bench_train_synthetic",
    "synthetic long-tailed lengths (inputs lognormal median 150, targets median 20)",
  )


def padded(
  inputs: packing.Ragged, targets: packing.Ragged, lengths: dict[str, int]
) -> dict[str, np.ndarray]:
  return packing.pack(inputs, targets, lengths, pack=False).features


def layouts(name: str, args: argparse.Namespace) -> dict[str, list[dict[str, np.ndarray]]]:
  """Batches of each layout, drawn from one example stream (see the module docstring)."""
  lengths = {"inputs": args.input_length, "targets": args.target_length}
  it = input_pipeline.make_train_iterator(
    name, lengths, args.batch, args.seed, shard_index=0, num_shards=1, window_size=args.window
  )
  try:
    packed = [next(it) for _ in range(args.num_batches)]
    stream = it._stream  # pylint: disable=protected-access
    ids, _ = stream.examples(0, np.zeros(len(stream.task_names), np.int64))
  finally:
    it.close()
  fixed, dynamic = [], []
  for i in range(args.num_batches):
    chunk = ids[i * args.batch : (i + 1) * args.batch]
    if len(chunk) < args.batch:
      raise SystemExit(
        f"--num_batches {args.num_batches} x --batch {args.batch} exceeds the "
        f"{len(ids)} examples of one window; raise --window."
      )
    inputs, targets = stream.inputs.take(chunk), stream.targets.take(chunk)
    fixed.append(padded(inputs, targets, lengths))
    longest = {
      k: min(lengths[k], -(-int(v.lengths.max()) // 8) * 8)
      for k, v in (("inputs", inputs), ("targets", targets))
    }
    dynamic.append(padded(inputs, targets, longest))
  return {"packed": packed, "padded": fixed, "dynamic": dynamic}


def hf_config(config: network.T5Config) -> dict[str, Any]:
  """transformers.T5Config keyword arguments for the same network (T5 1.1, no dropout)."""
  return dict(
    vocab_size=config.vocab_size,
    d_model=config.emb_dim,
    d_kv=config.head_dim,
    d_ff=config.mlp_dim,
    num_layers=config.num_encoder_layers,
    num_decoder_layers=config.num_decoder_layers,
    num_heads=config.num_heads,
    relative_attention_num_buckets=config.relative_attention_num_buckets,
    relative_attention_max_distance=config.relative_attention_max_distance,
    dropout_rate=0.0,
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
    decoder_start_token_id=PAD,
    pad_token_id=PAD,
    eos_token_id=1,
  )


# ---------------------------------------------------------------------------- measurement


def summarize(
  records: list[tuple[float, float, list[int]]],
  batches: list[dict],
  config: network.T5Config,
  peak: tuple[float, float],
) -> dict[str, Any]:
  """Rates of one (framework, layout) over all its timed steps: (wall s, CPU s, batch indices)
  per timing record. Tokens/s and MFU are totals over totals (dynamic batches differ in
  shape); the step time shown is the median per record."""

  def step_flops(b):
    return flops_lib.train_step_flops(
      config,
      batch_size=b["encoder_input_tokens"].shape[0],
      input_length=b["encoder_input_tokens"].shape[1],
      target_length=b["decoder_target_tokens"].shape[1],
    )

  used = [i for _, _, indices in records for i in indices]
  wall, cpu = sum(r[0] for r in records), sum(r[1] for r in records)
  tokens = sum(real_tokens(batches[i]) for i in used)
  flops = sum(step_flops(batches[i]) for i in used)
  return {
    "step_time_s": statistics.median(w / len(i) for w, _, i in records),
    "steps": len(used),
    "records": records,
    "tokens_per_step": tokens / len(used),
    "non_padding": non_padding([batches[i] for i in used]),
    "tokens_per_s": tokens / wall,
    "train_step_flops": flops / len(used),
    "mfu": flops / wall / peak[0],
    "mfu_cpu_time": flops / cpu / peak[1],
  }


def measure(
  size: str,
  config: network.T5Config,
  model_kwargs: dict[str, Any],
  batches: dict[str, list[dict]],
  peer: benchmark_peer.PeerProcess | None,
  peak: MatmulPeak,
  args: argparse.Namespace,
  mesh: jax.sharding.Mesh,
) -> dict[str, Any]:
  """Our windows for each layout, each followed by the peer's steps, with peak samples."""
  ours = {}
  for layout in ("packed", "padded"):
    print(f"[{size}] compiling flan's train step ({layout}) ...", flush=True)
    process_peak_rss(reset=True)
    ours[layout] = OursRunner(config, model_kwargs, batches[layout], mesh, args.warmup)
    ours[layout].rss = process_peak_rss()
  peer_layouts = ("padded", "dynamic") if peer else ()
  for layout in peer_layouts:
    peer.load(layout, batches[layout])
    peer.run(layout, 1)  # warm-up
  times = {(f, l): [] for f, l in [("flan", l) for l in ours] + [("peer", l) for l in peer_layouts]}
  peaks = [peak.sample()]
  for w in range(args.windows):  # every run takes every batch of its layout once per window
    for layout, runner in ours.items():
      runner.run(args.settle)
      times["flan", layout].append(runner.run(len(batches[layout])))
    for layout in peer_layouts:
      peer.run(layout, args.settle)
      times["peer", layout] += [
        (wall, cpu, [i]) for wall, cpu, i in peer.run(layout, len(batches[layout]))
      ]
    peaks.append(peak.sample())
    print(
      f"[{size}] window {w + 1}/{args.windows}: "
      + ", ".join(f"{f} {l} {v[-1][0] / len(v[-1][2]):.3f} s/step" for (f, l), v in times.items()),
      flush=True,
    )
  median_peak = tuple(statistics.median(p[i] for p in peaks) for i in (0, 1))
  runs = {}
  for (framework, layout), t in times.items():
    run = summarize(t, batches[layout], config, median_peak)
    if framework == "flan":
      memory, source = ours[layout].peak_memory()
      run.update(
        compile_s=ours[layout].compile_s,
        last_loss=ours[layout].loss(),
        peak_memory_bytes=memory,
        peak_memory_source=source,
        process_peak_rss_bytes=ours[layout].rss,
      )
    runs[f"{framework} {layout}"] = run
  if peer:
    info = peer.info()
    for layout in peer_layouts:
      runs[f"peer {layout}"].update(info)
  tps = {k: v["tokens_per_s"] for k, v in runs.items()}
  ratios = {}
  for ours_run, peer_run in (
    ("flan packed", "peer padded"),
    ("flan packed", "peer dynamic"),
    ("flan padded", "peer padded"),
  ):
    if peer_run in tps:
      ratios[f"{ours_run} / {peer_run}"] = tps[ours_run] / tps[peer_run]
  return {
    "size": size,
    "peak_flops_per_s": median_peak[0],
    "peak_flops_per_cpu_s": median_peak[1],
    "peak_samples": peaks,
    "runs": runs,
    "ratios": ratios,
    "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
  }


# ---------------------------------------------------------------------------- report


def print_table(rows: list[dict], peak: MatmulPeak, workload: str) -> None:
  print(f"\nworkload: {workload}")
  print(
    f"matmul peak: {peak.dtype} [{peak.n}, {peak.n}] products on {peak.devices} device(s) "
    "(float32 accumulation), sampled before and after every window; median per size:"
  )
  for r in rows:
    print(
      f"  {r['size']}: {r['peak_flops_per_s'] / 1e9:.1f} GFLOP/s (samples "
      + ", ".join(f"{p / 1e9:.0f}" for p, _ in r["peak_samples"])
      + ")"
    )
  head = ("size", "run", "step time", "tokens/s", "non-pad", "MFU", "MFU (CPU time)", "peak mem")
  lines = [head]
  for r in rows:
    for name, run in r["runs"].items():
      memory = run.get("peak_memory_bytes", run.get("process_peak_rss_bytes"))
      lines.append(
        (
          r["size"],
          name,
          f"{run['step_time_s']:.3f} s",
          f"{run['tokens_per_s']:,.0f}",
          f"{100 * run['non_padding']:.1f}%",
          f"{100 * run['mfu']:.1f}%",
          f"{100 * run['mfu_cpu_time']:.1f}%",
          f"{memory / 2**30:.2f} GiB" + ("" if "peak_memory_bytes" in run else " RSS"),
        )
      )
  widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
  print()
  for j, line in enumerate(lines):
    print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)))
    if j == 0:
      print("  ".join("-" * w for w in widths))
  print("\nratios of tokens/s (ours / peer's):")
  for r in rows:
    for name, ratio in r["ratios"].items():
      print(f"  {r['size']}: {name} = {ratio:.2f}x")
  source = next(iter(rows[0]["runs"].values())).get("peak_memory_source", "") if rows else ""
  print(
    f"\ntokens/s: real (non-padding) input + target tokens per second; non-pad: their share "
    "of the batch's token slots.\nMFU: model FLOPs (flan.training.flops, padding slots "
    "included) per "
    f"second / the matmul peak; the CPU-time column divides process CPU time instead.\n"
    f"peak mem: ours {source}; the peer's is its process's peak RSS."
  )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--sizes", default="tiny,small", help="comma-separated configs/models names")
  p.add_argument("--batch", type=int, default=8, help="global batch (rows)")
  p.add_argument("--lengths", default="512,128", help="input,target row lengths")
  p.add_argument(
    "--windows",
    type=int,
    default=3,
    help="timing windows; in each, every run steps once through its batches",
  )
  p.add_argument("--warmup", type=int, default=1, help="untimed steps after compilation")
  p.add_argument(
    "--settle",
    type=int,
    default=1,
    help="untimed steps of each run at the start of every window (both frameworks; "
    "the first step after the other framework's measured 5-10%% slower)",
  )
  p.add_argument(
    "--num_batches",
    type=int,
    default=4,
    help="distinct batches per layout (the steps of one window)",
  )
  p.add_argument(
    "--peer",
    dest="peer",
    action="store_true",
    default=True,
    help="also time Hugging Face T5 (PyTorch) when installed (default)",
  )
  p.add_argument("--no_peer", dest="peer", action="store_false", help="skip the peer")
  p.add_argument(
    "--dtype",
    default="auto",
    help="activation dtype of both frameworks: float32 | bfloat16 | auto (float32 "
    "on CPU, bfloat16 on accelerators)",
  )
  p.add_argument("--mixture", default="flan_holdout_nli_train", help="FLAN mixture to draw from")
  p.add_argument("--data_dir", default=str(SHARED / "data" / "tfds"))
  p.add_argument("--vocab", default=str(SHARED / "vocab" / "t5_spiece.model"))
  p.add_argument(
    "--synthetic",
    action="store_true",
    help="synthetic long-tailed lengths even when FLAN data is present",
  )
  p.add_argument("--synthetic_examples", type=int, default=20000)
  p.add_argument("--window", type=int, default=1024, help="examples packed together")
  p.add_argument("--scan_layers", action="store_true", help="gin SCAN_LAYERS = True")
  p.add_argument(
    "--remat_policy", default="none", choices=model_config.REMAT_POLICIES, help="gin REMAT_POLICY"
  )
  p.add_argument(
    "--attention",
    default="auto",
    choices=("auto",) + attention.IMPLEMENTATIONS,
    help="T5Config.attention (flan.model.attention): auto | xla | rows",
  )
  p.add_argument("--peak_size", type=int, default=0, help="matmul peak n (0: 2048 CPU, 8192 else)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default=None, help="write the results as JSON here")
  args = p.parse_args(argv)
  try:
    args.input_length, args.target_length = (int(x) for x in args.lengths.split(","))
  except ValueError:
    p.error(f"--lengths={args.lengths!r}: give two integers, input,target (e.g. 512,128).")
  if min(args.windows, args.batch, args.num_batches) < 1:
    p.error("--batch, --windows and --num_batches must be at least 1.")
  if min(args.warmup, args.settle) < 0:
    p.error("--warmup and --settle must be >= 0.")
  return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
  args = parse_args(argv)
  backend = jax.default_backend()
  dtype = args.dtype if args.dtype != "auto" else ("float32" if backend == "cpu" else "bfloat16")
  mesh = partitioning.make_mesh({"data": -1, "model": 1})
  try:
    partitioning.check_batch_size(args.batch, mesh)
  except ValueError as e:
    raise SystemExit(f"--batch: {e}") from None
  load = os.getloadavg() if hasattr(os, "getloadavg") else None
  print(
    f"{len(jax.devices())} {backend} device(s) ({jax.devices()[0].device_kind}), "
    f"{os.cpu_count()} CPUs, load average {load}, activations {dtype}, batch {args.batch} x "
    f"({args.input_length} + {args.target_length})",
    flush=True,
  )
  name, workload = stream_name(args)
  batches = layouts(name, args)
  print(
    f"workload: {workload}; non-padding share: "
    + ", ".join(f"{k} {non_padding(v):.3f}" for k, v in batches.items()),
    flush=True,
  )
  peak = MatmulPeak(mesh, dtype, args.peak_size or (2048 if backend == "cpu" else 8192))
  no_peer = benchmark_peer.available() if args.peer else "--no_peer"
  if no_peer:
    print(f"peer skipped: {no_peer}")
  rows = []
  for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
    config, model_kwargs = model_from_gin(
      size,
      dtype=dtype,
      scan_layers=args.scan_layers,
      remat_policy=args.remat_policy,
      attention=args.attention,
    )
    peer = None
    if not no_peer:
      print(f"[{size}] starting the peer process ...", flush=True)
      peer = benchmark_peer.PeerProcess(hf_config(config), dtype)
    try:
      rows.append(measure(size, config, model_kwargs, batches, peer, peak, args, mesh))
    finally:
      if peer is not None:
        peer.close()
  print_table(rows, peak, workload)
  result = {
    "argv": sys.argv[1:],
    "backend": backend,
    "devices": [str(d) for d in jax.devices()],
    "device_kind": jax.devices()[0].device_kind,
    "cpu_count": os.cpu_count(),
    "load_average_at_start": load,
    "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
    "platform": platform.platform(),
    "jax": jax.__version__,
    "dtype": dtype,
    "batch": args.batch,
    "lengths": [args.input_length, args.target_length],
    "workload": workload,
    "matmul_peak": peak.describe(),
    "peer_skipped": no_peer,
    "rows": rows,
  }
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {args.out}")
  return result


if __name__ == "__main__":
  main()
