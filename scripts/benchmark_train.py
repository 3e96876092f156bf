"""Training-throughput benchmark: flan's train step against Hugging Face T5 (PyTorch), same run.

For each T5 1.1 size (configs/models/<size>.gin, read through gin) and each batch layout
(unpacked rows, and packed rows of 3-4 segments), it times the real train step of
`flan.trainer.make_train_step` (flan's Adafactor, state donated, batches already on device,
one `block_until_ready` per timing window) on every device present, and reports:

* step time (median over windows of window time / steps) and real (non-padding) input +
  target tokens per second;
* model FLOPs utilisation: `flan.flops.train_step_flops` (encoder weights x input tokens,
  decoder and logits weights x target tokens, cross-attention K/V x input tokens, attention
  score/value products; 3 x forward) per second, divided by a matmul peak measured in the
  same run on the same devices (a sharded [devices, n, n] @ [devices, n, n], sampled before
  and after every timing window; the median of the samples);
* peak memory: the device's `memory_stats()` peak when it has one, else the compiled step's
  XLA buffer plan (arguments + outputs - donated + temporaries); the JSON also has the
  process's peak RSS (VmHWM);
* process CPU time per step beside wall time (on a shared machine the wall figures of each
  phase depend on the other jobs; CPU time is steadier, though spinning threads count);
* the peer, when `torch` and `transformers` are installed (extra `[bench]`):
  `T5ForConditionalGeneration` with the same sizes (gated GELU, untied logits, no dropout)
  and `transformers.optimization.Adafactor` (lr 1e-3, parameter scaling, no relative step),
  on the same unpacked batch. The peer cannot pack: packed rows are compared with the
  peer's figure on the unpacked batch, each side counting its own real tokens.

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

import gin  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from flan import flops as flops_lib  # noqa: E402
from flan import model as model_lib  # noqa: E402
from flan import network  # noqa: E402
from flan import optimizer as optimizer_lib  # noqa: E402
from flan import partitioning  # noqa: E402
from flan import trainer  # noqa: E402

PAD, EOS, FIRST_WORD = 0, 1, 2


# ---------------------------------------------------------------------------- configuration


def model_from_gin(size: str, *, dtype: str, scan_layers: bool, remat_policy: str
                   ) -> tuple[network.T5Config, dict[str, Any]]:
  """The size's `T5Config` and model keyword arguments, as configs/models/<size>.gin binds them."""
  path = ROOT / "configs" / "models" / f"{size}.gin"
  if not path.exists():
    known = sorted(p.stem for p in (ROOT / "configs" / "models").glob("*.gin"))
    raise SystemExit(f"--sizes: no model config {path}; known sizes: {', '.join(known)}.")
  gin.clear_config()
  gin.parse_config_files_and_bindings(
      [str(path)], [f"ACTIVATION_DTYPE = {dtype!r}", f"SCAN_LAYERS = {scan_layers}",
                    f"REMAT_POLICY = {remat_policy!r}", "DROPOUT_RATE = 0.0"])
  config = network.T5Config(**gin.get_bindings("flan.network.T5Config"))
  kwargs = {k: v for k, v in gin.get_bindings("flan.model.EncoderDecoderModel").items()
            if k != "config"}
  gin.clear_config()
  return config, kwargs


# ---------------------------------------------------------------------------- synthetic batches


def _split(rng: np.random.Generator, total: int, parts: int) -> np.ndarray:
  """`parts` positive lengths summing to `total` (random cut points)."""
  cuts = np.sort(rng.choice(np.arange(1, total), parts - 1, replace=False))
  return np.diff(np.concatenate([[0], cuts, [total]]))


def synthetic_batch(rng: np.random.Generator, batch_size: int, input_length: int,
                    target_length: int, *, pack: bool, fill: float = 1.0,
                    vocab_size: int = 32000) -> dict[str, np.ndarray]:
  """A batch in the EncDecFeatureConverter layout with random word ids, EOS-terminated.

  Unpacked: one example per row of `fill`..100% of the row. Packed: 3 or 4 segments per row
  filling 90-100% of it, with segment ids and per-segment positions.
  """
  names = ("encoder_input_tokens", "decoder_target_tokens", "decoder_input_tokens",
           "decoder_loss_weights")
  out = {k: np.zeros((batch_size, target_length if k != names[0] else input_length), np.int32)
         for k in names}
  if pack:
    for k, length in (("encoder", input_length), ("decoder", target_length)):
      out[f"{k}_segment_ids"] = np.zeros((batch_size, length), np.int32)
      out[f"{k}_positions"] = np.zeros((batch_size, length), np.int32)
  for row in range(batch_size):
    parts = int(rng.integers(3, 5)) if pack else 1
    low = 0.9 if pack else fill
    seg = {}
    for k, length in (("encoder", input_length), ("decoder", target_length)):
      used = int(rng.integers(max(parts, int(np.ceil(low * length))), length + 1))
      seg[k] = _split(rng, used, parts) if parts > 1 else np.array([used])
    for k, key in (("encoder", "encoder_input_tokens"), ("decoder", "decoder_target_tokens")):
      start = 0
      for i, n in enumerate(seg[k]):
        tokens = rng.integers(FIRST_WORD, vocab_size, n).astype(np.int32)
        tokens[-1] = EOS
        out[key][row, start:start + n] = tokens
        if k == "decoder":
          out["decoder_input_tokens"][row, start + 1:start + n] = tokens[:-1]  # 0 starts each
          out["decoder_loss_weights"][row, start:start + n] = 1
        if pack:
          out[f"{k}_segment_ids"][row, start:start + n] = i + 1
          out[f"{k}_positions"][row, start:start + n] = np.arange(n)
        start += n
  return out


def real_tokens(batch: dict[str, np.ndarray]) -> int:
  """Non-padding input tokens + target tokens of a batch."""
  return int((batch["encoder_input_tokens"] != PAD).sum() + batch["decoder_loss_weights"].sum())


# ---------------------------------------------------------------------------- measurements


def process_peak_rss(reset: bool = False) -> float:
  """Peak resident set size in bytes (VmHWM; `reset=True` restarts it, Linux only)."""
  try:
    if reset:
      with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return float(line.split()[1]) * 1024
  except OSError:
    pass
  scale = 1 if sys.platform == "darwin" else 1024
  return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


class MatmulPeak:
  """FLOP/s of a [devices, n, n] @ [devices, n, n] product, one matrix per device.

  `chain` products per call amortise the dispatch. Samples are taken before the runs and
  after every timing window, so a run's MFU divides by the peak the machine offered at the
  same time (a shared machine's load drifts); the median of those samples is used.
  """

  def __init__(self, mesh: jax.sharding.Mesh, dtype: str, n: int, chain: int = 4):
    self.n, self.dtype, self.chain, self.devices = n, dtype, chain, mesh.devices.size
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(mesh.axis_names))
    key = jax.random.PRNGKey(0)
    shape = (self.devices, n, n)
    self.a = jax.device_put(jax.random.normal(key, shape, dtype) / np.sqrt(n), sharding)
    self.b = jax.device_put(jax.random.normal(jax.random.fold_in(key, 1), shape, dtype)
                            / np.sqrt(n), sharding)

    @jax.jit
    def products(a, b):
      for _ in range(chain):
        a = jnp.einsum("dij,djk->dik", a, b)
      return a
    self.products = products
    jax.block_until_ready(products(self.a, self.b))  # compile

  def sample(self, reps: int = 2) -> tuple[float, float]:
    """Best FLOP/s over `reps` calls: per wall second, and per process CPU second."""
    best, best_cpu = float("inf"), float("inf")
    for _ in range(reps):
      t0, c0 = time.perf_counter(), time.process_time()
      jax.block_until_ready(self.products(self.a, self.b))
      best = min(best, time.perf_counter() - t0)
      best_cpu = min(best_cpu, time.process_time() - c0)
    work = 2.0 * self.n ** 3 * self.chain * self.devices
    return work / best, work / max(best_cpu, 1e-9)

  def describe(self) -> dict[str, Any]:
    return {"n": self.n, "dtype": self.dtype, "devices": self.devices, "chain": self.chain}


class OursRunner:
  """flan's real train step (`trainer.make_train_step`) on pre-placed (prefetched) batches."""

  def __init__(self, config: network.T5Config, model_kwargs: dict[str, Any],
               batches: list[dict], mesh: jax.sharding.Mesh, warmup: int):
    model = model_lib.EncoderDecoderModel(config, **model_kwargs)
    tx, schedule = optimizer_lib.make_optimizer(base_learning_rate=1e-3)
    shapes = {k: v.shape for k, v in batches[0].items()}
    self.state, shardings = trainer.create_train_state(model, tx, mesh, jax.random.PRNGKey(0),
                                                       shapes)
    self.step = trainer.make_train_step(model, tx, mesh=mesh, shardings=shardings,
                                        schedule=schedule)
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

  def run(self, steps: int) -> tuple[float, float]:
    """(wall, process CPU) seconds per step over `steps` steps dispatched back to back, with
    one sync at the end."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
      self.state, self.metrics = self.step(self.state, self.batches[self.i % len(self.batches)],
                                           self.rng)
      self.i += 1
    jax.block_until_ready((self.state, self.metrics))
    return (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps

  def peak_memory(self) -> tuple[float, str]:
    """(bytes, source): the allocator's peak when the device reports one, else XLA's plan."""
    stats = getattr(self.mesh.devices.flat[0], "memory_stats", lambda: None)()
    if stats and "peak_bytes_in_use" in stats:
      return float(stats["peak_bytes_in_use"]), "device peak_bytes_in_use"
    m = self.memory
    planned = (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
               + m.temp_size_in_bytes)
    return float(planned), "XLA buffers (arguments + outputs - donated + temporaries)"

  def loss(self) -> float:
    return float(jax.device_get(self.metrics["loss"]))


def peer_available() -> str | None:
  """None when torch + transformers import, else why not."""
  try:
    import torch  # noqa: F401
    import transformers  # noqa: F401
  except ImportError as e:
    return f"{e.name} is not installed (pip install -e '.[bench]')"
  return None


class PeerRunner:
  """Hugging Face T5ForConditionalGeneration + its Adafactor on the unpacked batches."""

  def __init__(self, config: network.T5Config, batches: list[dict], dtype: str):
    import torch
    import transformers
    from transformers.optimization import Adafactor

    torch.set_num_threads(os.cpu_count() or 1)
    self.torch = torch
    self.device = "cuda" if torch.cuda.is_available() else "cpu"
    hf_config = transformers.T5Config(
        vocab_size=config.vocab_size, d_model=config.emb_dim, d_kv=config.head_dim,
        d_ff=config.mlp_dim, num_layers=config.num_encoder_layers,
        num_decoder_layers=config.num_decoder_layers, num_heads=config.num_heads,
        relative_attention_num_buckets=config.relative_attention_num_buckets,
        relative_attention_max_distance=config.relative_attention_max_distance,
        dropout_rate=0.0, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=EOS)
    torch.manual_seed(0)
    rss0 = process_peak_rss(reset=True)
    model = transformers.T5ForConditionalGeneration(hf_config)
    # transformers 5 ties lm_head to the embedding whatever the config says: untie (T5 1.1).
    model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
    self.model = model.to(self.device).train()
    self.opt = Adafactor(model.parameters(), lr=1e-3, scale_parameter=True, relative_step=False,
                         warmup_init=False, clip_threshold=1.0, decay_rate=-0.8)
    self.autocast = lambda: torch.autocast(self.device, dtype=torch.bfloat16,
                                           enabled=dtype == "bfloat16")
    self.inputs = [self._to_torch(b) for b in batches]
    self.i, self.loss = 0, float("nan")
    self.run(1)  # warm-up
    self.memory_increase = process_peak_rss() - rss0
    self.versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                     "torch_threads": torch.get_num_threads(), "device": self.device}

  def _to_torch(self, b: dict[str, np.ndarray]) -> dict[str, Any]:
    t = lambda x: self.torch.from_numpy(np.asarray(x, np.int64)).to(self.device)
    labels = np.where(b["decoder_loss_weights"] > 0, b["decoder_target_tokens"], -100)
    return {"input_ids": t(b["encoder_input_tokens"]),
            "attention_mask": t(b["encoder_input_tokens"] != PAD),
            "decoder_input_ids": t(b["decoder_input_tokens"]),
            "decoder_attention_mask": t(b["decoder_loss_weights"] > 0), "labels": t(labels)}

  def run(self, steps: int) -> list[tuple[float, float]]:
    """(wall, process CPU) seconds of each of `steps` full steps (forward, backward, update)."""
    sync = self.torch.cuda.synchronize if self.device == "cuda" else (lambda: None)
    times = []
    for _ in range(steps):
      sync()
      t0, c0 = time.perf_counter(), time.process_time()
      with self.autocast():
        out = self.model(**self.inputs[self.i % len(self.inputs)])
      out.loss.backward()
      self.opt.step()
      self.opt.zero_grad(set_to_none=True)
      sync()
      times.append((time.perf_counter() - t0, time.process_time() - c0))
      self.i += 1
      self.loss = float(out.loss.detach())
    return times


def measure(size: str, mode: str, config: network.T5Config, model_kwargs: dict[str, Any],
            batches: list[dict], peer: PeerRunner | None, peak: MatmulPeak,
            args: argparse.Namespace, mesh: jax.sharding.Mesh) -> dict[str, Any]:
  """One table row: our windows interleaved with peak samples and peer steps.

  Besides wall time, process CPU time is recorded for every window, peer step and peak
  sample: on a machine shared with other jobs the scheduler hands each phase a different
  share of the cores, while FLOPs per CPU-second stay comparable across phases.
  """
  print(f"[{size} {mode}] compiling flan's train step ...", flush=True)
  process_peak_rss(reset=True)
  ours = OursRunner(config, model_kwargs, batches, mesh, args.warmup)
  ours_times, peer_times, peaks = [], [], [peak.sample()]
  for w in range(args.windows):
    ours_times.append(ours.run(args.steps))
    peaks.append(peak.sample())
    if peer is not None:
      peer_times += peer.run(args.peer_steps)
    print(f"[{size} {mode}] window {w + 1}/{args.windows}: ours {ours_times[-1][0]:.3f} s/step"
          + (f", peer {statistics.median(t for t, _ in peer_times[-args.peer_steps:]):.3f} "
             "s/step" if peer is not None else ""), flush=True)
  step_flops = flops_lib.train_step_flops(config, batch_size=args.batch,
                                          input_length=args.input_length,
                                          target_length=args.target_length)
  median = lambda xs, i: statistics.median(x[i] for x in xs)
  peak_flops, peak_cpu_flops = median(peaks, 0), median(peaks, 1)
  tokens = statistics.mean(real_tokens(b) for b in batches)
  step_time, step_cpu = median(ours_times, 0), median(ours_times, 1)
  memory, memory_source = ours.peak_memory()
  row = {"size": size, "mode": mode, "train_step_flops": step_flops,
         "xla_cost_analysis_flops": ours.xla_flops, "peak_flops_per_s": peak_flops,
         "peak_flops_per_cpu_s": peak_cpu_flops, "peak_samples": peaks,
         "ours": {"step_time_s": step_time, "step_cpu_s": step_cpu,
                  "window_step_times_s": ours_times, "tokens_per_step": tokens,
                  "tokens_per_s": tokens / step_time, "model_flops_per_s": step_flops / step_time,
                  "mfu": step_flops / step_time / peak_flops,
                  "mfu_cpu_time": step_flops / step_cpu / peak_cpu_flops,
                  "compile_s": ours.compile_s, "last_loss": ours.loss(),
                  "peak_memory_bytes": memory, "peak_memory_source": memory_source,
                  "process_peak_rss_bytes": process_peak_rss()},
         "peer": None, "ratio": None, "ratio_cpu_time": None,
         "config": {k: getattr(config, k) for k in config.__dataclass_fields__}}
  if peer is not None:
    peer_step, peer_cpu = median(peer_times, 0), median(peer_times, 1)
    peer_tokens = statistics.mean(real_tokens(b) for b in peer.batches)
    row["peer"] = {"step_time_s": peer_step, "step_cpu_s": peer_cpu, "step_times_s": peer_times,
                   "tokens_per_step": peer_tokens, "tokens_per_s": peer_tokens / peer_step,
                   "mfu": step_flops / peer_step / peak_flops,
                   "mfu_cpu_time": step_flops / peer_cpu / peak_cpu_flops,
                   "last_loss": peer.loss, "memory_increase_bytes": peer.memory_increase,
                   "batch": "unpacked", **peer.versions}
    row["ratio"] = row["ours"]["tokens_per_s"] / row["peer"]["tokens_per_s"]
    row["ratio_cpu_time"] = (tokens / step_cpu) / (peer_tokens / peer_cpu)
  return row


# ---------------------------------------------------------------------------- report


def print_table(rows: list[dict], peak: MatmulPeak) -> None:
  print(f"\nmatmul peak: {peak.dtype} [{peak.devices}, {peak.n}, {peak.n}] products, best of "
        "2 calls, sampled before and after every window; median per row:")
  for r in rows:
    print(f"  {r['size']} {r['mode']}: {r['peak_flops_per_s'] / 1e9:.1f} GFLOP/s (samples "
          + ", ".join(f"{p / 1e9:.0f}" for p, _ in r["peak_samples"])
          + f"); {r['peak_flops_per_cpu_s'] / 1e9:.1f} GFLOP per CPU-second")
  head = ("size", "mode", "step time", "tokens/s", "MFU", "peak mem", "peer tokens/s", "ratio")
  lines = [head]
  for r in rows:
    ours, peer = r["ours"], r["peer"]
    lines.append((r["size"], r["mode"], f"{ours['step_time_s']:.3f} s",
                  f"{ours['tokens_per_s']:,.0f}", f"{100 * ours['mfu']:.1f}%",
                  f"{ours['peak_memory_bytes'] / 2**30:.2f} GiB",
                  f"{peer['tokens_per_s']:,.0f} (unpacked)" if peer else "-",
                  f"{r['ratio']:.2f}x" if peer else "-"))
  widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
  print()
  for j, line in enumerate(lines):
    print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)))
    if j == 0:
      print("  ".join("-" * w for w in widths))
  source = rows[0]["ours"]["peak_memory_source"] if rows else ""
  print(f"tokens/s: real (non-padding) input + target tokens per second. MFU: model FLOPs "
        f"(flan.flops, padding slots included) per second / the matmul peak.\npeak mem: {source}. "
        "The peer (HF T5 + Adafactor, PyTorch) cannot pack: it always runs the unpacked batch, "
        "its steps interleaved with our windows;\nratio = our tokens/s / the peer's tokens/s.")
  print("\nsame, in process CPU time (less sensitive to other jobs on a shared machine, but "
        "it counts spin-waiting threads, which inflates the peer's OpenMP figure under load):")
  for r in rows:
    ours, peer = r["ours"], r["peer"]
    print(f"  {r['size']} {r['mode']}: ours {ours['step_cpu_s']:.2f} CPU-s/step, "
          f"MFU {100 * ours['mfu_cpu_time']:.1f}%"
          + (f"; peer {peer['step_cpu_s']:.2f} CPU-s/step, MFU {100 * peer['mfu_cpu_time']:.1f}%;"
             f" ratio {r['ratio_cpu_time']:.2f}x" if peer else ""))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--sizes", default="tiny,small", help="comma-separated configs/models names")
  p.add_argument("--batch", type=int, default=8, help="global batch (rows)")
  p.add_argument("--lengths", default="512,128", help="input,target row lengths")
  p.add_argument("--steps", type=int, default=2, help="our steps per timing window")
  p.add_argument("--windows", type=int, default=3, help="timing windows (median taken)")
  p.add_argument("--warmup", type=int, default=1, help="untimed steps after compilation")
  p.add_argument("--pack", dest="pack", action="store_const", const=True, default=None,
                 help="only packed rows (default: both layouts)")
  p.add_argument("--no_pack", dest="pack", action="store_const", const=False,
                 help="only unpacked rows")
  p.add_argument("--peer", dest="peer", action="store_true", default=True,
                 help="also time Hugging Face T5 (PyTorch) when installed (default)")
  p.add_argument("--no_peer", dest="peer", action="store_false", help="skip the peer")
  p.add_argument("--peer_steps", type=int, default=1, help="peer steps after each window")
  p.add_argument("--dtype", default="auto",
                 help="activation dtype: float32 | bfloat16 | auto (float32 on CPU, else bf16)")
  p.add_argument("--fill", type=float, default=1.0,
                 help="unpacked rows hold one example of this fraction..100%% of the row")
  p.add_argument("--scan_layers", action="store_true", help="gin SCAN_LAYERS = True")
  p.add_argument("--remat_policy", default="none", choices=network.REMAT_POLICIES,
                 help="gin REMAT_POLICY")
  p.add_argument("--peak_size", type=int, default=0, help="matmul peak n (0: 2048 CPU, 8192 else)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default=None, help="write the results as JSON here")
  args = p.parse_args(argv)
  try:
    args.input_length, args.target_length = (int(x) for x in args.lengths.split(","))
  except ValueError:
    p.error(f"--lengths={args.lengths!r}: give two integers, input,target (e.g. 512,128).")
  if min(args.steps, args.windows, args.peer_steps, args.batch) < 1 or args.warmup < 0:
    p.error("--batch, --steps, --windows and --peer_steps must be at least 1, --warmup >= 0.")
  if not 0.0 < args.fill <= 1.0:
    p.error("--fill must lie in (0, 1].")
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
  print(f"{len(jax.devices())} {backend} device(s) ({jax.devices()[0].device_kind}), "
        f"{os.cpu_count()} CPUs, load average {load}, activations {dtype}, batch {args.batch} x "
        f"({args.input_length} + {args.target_length})", flush=True)
  peak = MatmulPeak(mesh, dtype, args.peak_size or (2048 if backend == "cpu" else 8192))
  no_peer = peer_available() if args.peer else "--no_peer"
  if no_peer:
    print(f"peer skipped: {no_peer}")
  modes = {None: (False, True), True: (True,), False: (False,)}[args.pack]
  rng = np.random.default_rng(args.seed)
  rows = []
  for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
    config, model_kwargs = model_from_gin(size, dtype=dtype, scan_layers=args.scan_layers,
                                          remat_policy=args.remat_policy)
    unpacked = [synthetic_batch(rng, args.batch, args.input_length, args.target_length,
                                pack=False, fill=args.fill) for _ in range(2)]
    peer = None
    if not no_peer:
      print(f"[{size}] building the peer ...", flush=True)
      peer = PeerRunner(config, unpacked, dtype)
      peer.batches = unpacked
    for pack in modes:
      batches = ([synthetic_batch(rng, args.batch, args.input_length, args.target_length,
                                  pack=True) for _ in range(2)] if pack else unpacked)
      rows.append(measure(size, "packed" if pack else "unpacked", config, model_kwargs,
                          batches, peer, peak, args, mesh))
    del peer
  print_table(rows, peak)
  result = {"argv": sys.argv[1:], "backend": backend, "devices": [str(d) for d in jax.devices()],
            "device_kind": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(),
            "load_average_at_start": load,
            "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "platform": platform.platform(), "jax": jax.__version__, "dtype": dtype,
            "batch": args.batch, "lengths": [args.input_length, args.target_length],
            "matmul_peak": peak.describe(), "peer_skipped": no_peer, "rows": rows}
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {args.out}")
  return result


if __name__ == "__main__":
  main()
