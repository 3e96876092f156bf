"""Start-up at scale: time to first batch, reading CPU and peak RSS as the data grows.

Builds scaled copies of TFDS builders from the samples in ../shared/data/tfds: each train
split holds N examples (its real examples repeated), written the TFDS way (the same
builder directory, features and record format, a train TFRecord of N serialized records and
a dataset_info.json that says so). Then, for each N, it starts a fresh training input
pipeline (`flan.data.input_pipeline.make_train_iterator` over those datasets' FLAN train
tasks, the path of `flan.train`) in a fresh process and takes one batch:

  first   an empty token cache: read, preprocess, render, tokenize, write the cache
          (the cost of a run without the cache, plus writing it);
  cached  the same again: the tokens are memory-mapped from the cache;

each with 1 process (shard 0 of 1) and 2 processes at once (shards 0 and 1 of 2, each its
own process). Per run: wall time from process start to the first batch, the CPU time of
building the stream and its first batch ("reading CPU", `time.process_time`, all threads),
and the peak RSS of the process (`resource.getrusage(RUSAGE_SELF).ru_maxrss` at its end,
which is what its parent's RUSAGE_CHILDREN reports for it). A least-squares line over N
gives the fixed and per-example costs. The default datasets are three of the NLI cluster
(rte, snli, qnli: one TFDS builder each) to keep the build and the runs short.

  .venv/bin/python scripts/benchmark_scale.py --out /tmp/bench_scale.json
  .venv/bin/python scripts/benchmark_scale.py --scales 1000,10000,30000 --datasets rte,snli,qnli
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

_START = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
LENGTHS = {"inputs": 512, "targets": 64}
MIXTURE = "bench_scale_mixture"


# ----------------------------------------------------------------------------- scaled data


def scale_builder(tfds_name: str, src_data_dir: str, dst_data_dir: str, n: int) -> int:
  """Copies builder `tfds_name` into `dst_data_dir` with a train split of `n` examples.

  The train records are the original serialized examples repeated in order (bytes copied,
  no re-encoding); the other splits are copied as they are. Returns the train size.
  """
  import tensorflow as tf
  import tensorflow_datasets as tfds

  src = pathlib.Path(tfds.builder(tfds_name, data_dir=src_data_dir).data_dir)
  rel = os.path.relpath(src, src_data_dir)
  dst = pathlib.Path(dst_data_dir) / rel
  if dst.exists():
    shutil.rmtree(dst)
  shutil.copytree(src, dst)
  info = json.loads((dst / "dataset_info.json").read_text())
  train = next(s for s in info["splits"] if s["name"] == "train")
  if len(train["shardLengths"]) != 1:
    raise ValueError(f"{tfds_name}: expected one train shard, got {train['shardLengths']}.")
  name = f"{info['name']}-train.tfrecord-00000-of-00001"
  records = list(tf.data.TFRecordDataset(str(src / name)).as_numpy_iterator())
  total = 0
  with tf.io.TFRecordWriter(str(dst / name)) as writer:
    for i in range(n):
      writer.write(records[i % len(records)])
      total += len(records[i % len(records)])
  train["shardLengths"] = [str(n)]
  train["numBytes"] = str(total)
  (dst / "dataset_info.json").write_text(json.dumps(info, indent=2))
  return n


def build_scaled(datasets: list[str], src_data_dir: str, dst_data_dir: str, n: int) -> None:
  from flan.data import datasets as datasets_lib

  for d in datasets:
    for source in datasets_lib.get(d).sources:
      scale_builder(source.tfds_name, src_data_dir, dst_data_dir, n)


# ----------------------------------------------------------------------------- one run


def worker(args: argparse.Namespace) -> dict:
  """One process: the stream of shard `args.shard` of `args.num_shards`, one batch."""
  import resource

  import seqio

  from flan.data import input_pipeline, tasks

  tasks.register(data_dir=args.data_dir, vocabulary=args.vocabulary)
  members = [(task, 1.0) for d in args.datasets.split(",") for task, _ in tasks.train_members(d)]
  seqio.MixtureRegistry.remove(MIXTURE)
  seqio.MixtureRegistry.add(MIXTURE, members)
  imported = time.perf_counter() - _START
  cpu0 = time.process_time()
  it = input_pipeline.make_train_iterator(
    MIXTURE,
    LENGTHS,
    8 * args.num_shards,
    0,
    shard_index=args.shard,
    num_shards=args.num_shards,
    cache_dir=args.cache_dir or None,
    prefetch=1,
  )
  batch = next(it)
  cpu = time.process_time() - cpu0
  first_batch = time.perf_counter() - _START
  examples = int(sum(it._stream.sizes))  # pylint: disable=protected-access
  it.close()
  assert batch["encoder_input_tokens"].shape == (8, LENGTHS["inputs"])
  return {
    "shard": args.shard,
    "num_shards": args.num_shards,
    "examples_on_shard": examples,
    "start_s": imported,
    "first_batch_s": first_batch,
    "reading_cpu_s": cpu,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
  }


def run(args: argparse.Namespace, data_dir: str, cache_dir: str, num_shards: int) -> list[dict]:
  """Starts `num_shards` worker processes at once; their results."""
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        __file__,
        "--worker",
        "--data_dir",
        data_dir,
        "--vocabulary",
        args.vocabulary,
        "--datasets",
        args.datasets,
        "--cache_dir",
        cache_dir,
        "--shard",
        str(i),
        "--num_shards",
        str(num_shards),
      ],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(num_shards)
  ]
  out = []
  for p in procs:
    stdout, stderr = p.communicate()
    if p.returncode:
      raise RuntimeError(f"worker failed ({p.returncode}):\n{stderr[-3000:]}")
    line = [l for l in stdout.splitlines() if l.startswith("RESULT ")][-1]
    out.append(json.loads(line[len("RESULT ") :]))
  return out


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
  """Least-squares (intercept, slope)."""
  import numpy as np

  slope, intercept = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
  return float(intercept), float(slope)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument(
    "--scales", default="1000,10000,30000", help="train examples per dataset (comma-separated)"
  )
  p.add_argument("--datasets", default="rte,snli,qnli")
  p.add_argument(
    "--data_dir", default=str(SHARED / "data" / "tfds"), help="the TFDS samples to scale"
  )
  p.add_argument("--vocabulary", default=str(SHARED / "vocab" / "t5_spiece.model"))
  p.add_argument("--work_dir", default=None, help="scaled data and caches (default: a temp dir)")
  p.add_argument("--out", default=None, help="write the results as JSON here")
  p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--cache_dir", default="", help=argparse.SUPPRESS)
  p.add_argument("--shard", type=int, default=0, help=argparse.SUPPRESS)
  p.add_argument("--num_shards", type=int, default=1, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.worker:
    print("RESULT " + json.dumps(worker(args)), flush=True)
    return 0

  work = pathlib.Path(args.work_dir or tempfile.mkdtemp(prefix="bench_scale_"))
  rows = []
  try:
    for n in [int(s) for s in args.scales.split(",")]:
      data_dir = work / f"tfds_{n}"
      t0 = time.perf_counter()
      build_scaled(args.datasets.split(","), args.data_dir, str(data_dir), n)
      print(
        f"built {args.datasets} at {n} train examples each in {time.perf_counter() - t0:.1f} s",
        flush=True,
      )
      for num_shards in (1, 2):
        cache = work / f"cache_{n}_{num_shards}"
        for mode in ("first", "cached"):
          results = run(args, str(data_dir), str(cache), num_shards)
          row = {
            "per_dataset": n,
            "processes": num_shards,
            "mode": mode,
            "examples": sum(r["examples_on_shard"] for r in results),
            "first_batch_s": max(r["first_batch_s"] for r in results),
            "reading_cpu_s": max(r["reading_cpu_s"] for r in results),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
            "workers": results,
          }
          rows.append(row)
          print(
            f"N={n:>6} processes={num_shards} {mode:<6}  first batch "
            f"{row['first_batch_s']:6.1f} s  reading CPU/process {row['reading_cpu_s']:6.1f} s"
            f"  peak RSS/process {row['peak_rss_mib']:7.0f} MiB",
            flush=True,
          )
  finally:
    if args.work_dir is None:
      shutil.rmtree(work, ignore_errors=True)

  print()
  print(
    f"{'per dataset':>11} {'procs':>5} {'mode':<6} {'examples':>8} {'first batch s':>13} "
    f"{'reading CPU s':>13} {'peak RSS MiB':>12}"
  )
  for r in rows:
    print(
      f"{r['per_dataset']:>11} {r['processes']:>5} {r['mode']:<6} {r['examples']:>8} "
      f"{r['first_batch_s']:>13.1f} {r['reading_cpu_s']:>13.1f} {r['peak_rss_mib']:>12.0f}"
    )
  summary = {}
  for procs in (1, 2):
    for mode in ("first", "cached"):
      sel = [r for r in rows if r["processes"] == procs and r["mode"] == mode]
      if len(sel) < 2:
        continue
      xs = [r["examples"] for r in sel]
      key = f"{mode}/{procs}p"
      summary[key] = {
        "first_batch_s": dict(
          zip(("fixed", "per_example"), fit(xs, [r["first_batch_s"] for r in sel]))
        ),
        "reading_cpu_s": dict(
          zip(("fixed", "per_example"), fit(xs, [r["reading_cpu_s"] for r in sel]))
        ),
        "peak_rss_mib": dict(
          zip(("fixed", "per_example"), fit(xs, [r["peak_rss_mib"] for r in sel]))
        ),
        "largest_over_smallest": {
          k: sel[-1][k] / sel[0][k] for k in ("first_batch_s", "reading_cpu_s", "peak_rss_mib")
        },
      }
      s = summary[key]
      print(
        f"fit {key:<9}: first batch {s['first_batch_s']['fixed']:.1f} s + "
        f"{1e3 * s['first_batch_s']['per_example']:.3f} ms/example; reading CPU "
        f"{s['reading_cpu_s']['fixed']:.1f} s + {1e3 * s['reading_cpu_s']['per_example']:.3f}"
        f" ms/example; peak RSS {s['peak_rss_mib']['fixed']:.0f} MiB + "
        f"{1024 * s['peak_rss_mib']['per_example']:.2f} KiB/example; largest/smallest N: "
        + ", ".join(f"{k} {v:.2f}x" for k, v in s["largest_over_smallest"].items())
      )
  for n in sorted({r["per_dataset"] for r in rows}):
    one = [r for r in rows if r["per_dataset"] == n and r["mode"] == "first"]
    if len(one) == 2:
      ratio = one[1]["reading_cpu_s"] / one[0]["reading_cpu_s"]
      summary.setdefault("two_over_one_process_reading_cpu", {})[n] = ratio
      print(f"N={n}: reading CPU per process, 2 processes / 1 process (first run): {ratio:.2f}x")
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
