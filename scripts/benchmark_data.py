"""Input-pipeline benchmark: throughput and packing density, flan against seqio, same examples.

Two workloads:
  (a) real: a FLAN training mixture (default `flan_holdout_nli_train`) over the TFDS samples in
      ../shared/data/tfds, tokenized with the T5 SentencePiece model;
  (b) synthetic: long-tailed lengths like FLAN's (inputs lognormal median 150, sigma 1.0;
      targets median 20, sigma 1.2; n = 50,000).

For each, the same example stream goes through seqio's `EncDecFeatureConverter(pack=True)`
(windowed next-fit, tf.data) and through `flan.data.packing` (first-fit-decreasing over windows of
the same size); `flan.data.input_pipeline.make_train_iterator` is also timed end to end (mixture
sampling, packing, batching, prefetch). Reported per row: packed rows, examples per row,
non-padding fraction (encoder, decoder, overall), examples/s and non-padding tokens/s, and the
flan / seqio ratios.

  .venv/bin/python scripts/benchmark_data.py --out /tmp/bench_data.json
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

import numpy as np
import seqio
import tensorflow as tf

from flan.data import (
  input_pipeline,
  packing,
)

SHARED = ROOT.parent / "shared"


def synthetic_examples(n: int, seed: int) -> tuple[packing.Ragged, packing.Ragged]:
  """The long-tailed synthetic lengths (see the module docstring), random ids in [3, 32000),
  EOS last."""
  rng = np.random.default_rng(seed)
  li = np.clip(rng.lognormal(np.log(150), 1.0, n).astype(np.int64), 1, 4096)
  lt = np.clip(rng.lognormal(np.log(20), 1.2, n).astype(np.int64), 1, 1024)

  def ragged(lengths: np.ndarray) -> packing.Ragged:
    values = rng.integers(3, 32000, int(lengths.sum())).astype(np.int32)
    values[np.cumsum(lengths) - 1] = 1
    return packing.Ragged(values, lengths)

  return ragged(li), ragged(lt)


def register_in_memory(name: str, inputs: packing.Ragged, targets: packing.Ragged) -> None:
  """A seqio task over pre-tokenized examples (pass-through vocabulary, EOS already there)."""
  tensors = {
    k: tf.RaggedTensor.from_row_lengths(v.values, v.lengths)
    for k, v in (("inputs", inputs), ("targets", targets))
  }

  def dataset_fn(split, shuffle_files, seed=None):
    del split, shuffle_files, seed
    return tf.data.Dataset.from_tensor_slices(tensors)

  vocab = seqio.PassThroughVocabulary(size=32128, eos_id=1)
  seqio.TaskRegistry.remove(name)
  seqio.TaskRegistry.add(
    name,
    source=seqio.FunctionDataSource(dataset_fn, splits=["train"]),
    preprocessors=[],
    output_features={
      "inputs": seqio.Feature(vocab, add_eos=False),
      "targets": seqio.Feature(vocab, add_eos=False),
    },
  )


def _row(name, rows, examples, enc, dec, lengths, seconds):
  li, lt = lengths["inputs"], lengths["targets"]
  return {
    "run": name,
    "rows": rows,
    "examples": examples,
    "examples_per_row": examples / max(rows, 1),
    "non_pad_encoder": enc / max(rows * li, 1),
    "non_pad_decoder": dec / max(rows * lt, 1),
    "non_pad_overall": (enc + dec) / max(rows * (li + lt), 1),
    "seconds": seconds,
    "examples_per_s": examples / seconds,
    "tokens_per_s": (enc + dec) / seconds,
  }


def run_seqio(task: str, lengths, batch: int, examples: int):
  """seqio's converter over the whole task, in order (what t5x trains on)."""
  t0 = time.perf_counter()
  ds = seqio.get_dataset(
    task,
    task_feature_lengths=lengths,
    feature_converter=seqio.EncDecFeatureConverter(pack=True),
    dataset_split="train",
    shuffle=False,
    num_epochs=1,
    verbose=False,
  )
  ds = ds.batch(batch).prefetch(2)
  rows = enc = dec = 0
  for b in ds.as_numpy_iterator():
    rows += b["encoder_input_tokens"].shape[0]
    enc += int((b["encoder_segment_ids"] > 0).sum())
    dec += int(b["decoder_loss_weights"].sum())
  return _row(
    "seqio EncDecFeatureConverter(pack=True)",
    rows,
    examples,
    enc,
    dec,
    lengths,
    time.perf_counter() - t0,
  )


def run_packer(
  inputs: packing.Ragged, targets: packing.Ragged, lengths, window: int, strategy: str
):
  """flan.data.packing alone over the same examples and windows."""
  n = len(inputs.lengths)
  rows = enc = dec = 0
  t0 = time.perf_counter()
  for s in range(0, n, window):
    idx = np.arange(s, min(n, s + window))
    out = packing.pack(inputs.take(idx), targets.take(idx), lengths, strategy=strategy)
    rows += out.num_rows
    enc += int((out.features["encoder_segment_ids"] > 0).sum())
    dec += int(out.features["decoder_loss_weights"].sum())
  return _row(
    f"flan.data.packing ({strategy})", rows, n, enc, dec, lengths, time.perf_counter() - t0
  )


def run_pipeline(name: str, lengths, batch: int, seed: int, num_examples: int, window: int):
  """make_train_iterator end to end until it has handed out `num_examples` examples."""
  t0 = time.perf_counter()
  it = input_pipeline.make_train_iterator(
    name, lengths, batch, seed, shard_index=0, num_shards=1, window_size=window
  )
  build = time.perf_counter() - t0
  t1 = time.perf_counter()
  next(it)
  first = time.perf_counter() - t1
  while it.stats["examples"] < num_examples:
    next(it)
  seconds = time.perf_counter() - t1
  it.close()
  s = it.stats
  row = _row(
    "flan make_train_iterator",
    s["rows"],
    s["examples"],
    s["encoder_tokens"],
    s["decoder_tokens"],
    lengths,
    seconds,
  )
  row.update(
    build_seconds=build, first_batch_seconds=first, truncated_examples=s["truncated_examples"]
  )
  return row, it


def compare(label: str, inputs, targets, task_name: str, lengths, args) -> dict:
  """seqio vs flan.data.packing on one example stream, plus the flan pipeline on its task."""
  n = len(inputs.lengths)
  register_in_memory(task_name, inputs, targets)
  runs = []
  if not args.skip_seqio:
    runs.append(run_seqio(task_name, lengths, args.batch, n))
  runs.append(run_packer(inputs, targets, lengths, args.window, args.strategy))
  return {"workload": label, "num_examples": n, "runs": runs}


def prepared_mixture(mixture: str, data_dir: str) -> tuple[str, list[str], list[str]]:
  """`mixture` restricted to the datasets prepared in `data_dir` (the shared samples hold 43
  configs, not all 62), with the same examples-proportional rates; returns its name."""
  from flan.data import examples, mixtures, tasks

  members, used, missing = [], [], []
  for d in mixtures.train_datasets(mixture):
    try:
      sizes = {
        task: examples.num_input_examples(d, "train", data_dir, source or None)
        for task, source in tasks.train_members(d)
      }
    except examples.DataNotPreparedError:
      missing.append(d)
      continue
    members += [(task, mixtures.train_rate(n)) for task, n in sizes.items() if n]
    if any(sizes.values()):
      used.append(d)
  if not members:
    raise SystemExit(f"None of the datasets of {mixture} is prepared in {data_dir}.")
  name = f"bench_data_{mixture}_prepared"
  seqio.MixtureRegistry.remove(name)
  seqio.MixtureRegistry.add(name, members)
  return name, used, missing


def real_workload(args, lengths):
  from flan.data import tasks  # The data-core part: FLAN tasks over TFDS.

  tasks.register(data_dir=args.data_dir, vocabulary=args.vocab)
  name, used, missing = prepared_mixture(args.mixture, args.data_dir)
  print(
    f"{args.mixture}: {len(used)} datasets prepared in {args.data_dir}; not prepared "
    f"(left out): {', '.join(missing) or 'none'}"
  )
  t0 = time.perf_counter()
  row, it = run_pipeline(name, lengths, args.batch, args.seed, args.real_examples, args.window)
  row["materialize_seconds"] = row.pop("build_seconds")
  # The same examples the pipeline drew, in its order, for seqio and flan.data.packing.
  stream = it._stream  # pylint: disable=protected-access
  windows = -(-args.real_examples // args.window)
  counts = np.zeros(len(stream.task_names), np.int64)
  ids = []
  for w in range(windows):
    window_ids, counts = stream.examples(w, counts)
    ids.append(window_ids)
  ids = np.concatenate(ids)
  result = compare(
    f"real: {args.mixture}",
    stream.inputs.take(ids),
    stream.targets.take(ids),
    "bench_data_real_stream",
    lengths,
    args,
  )
  result["runs"].append(row)
  result["tasks"] = len(stream.task_names)
  result["datasets_not_prepared"] = missing
  result["distinct_examples"] = len(stream.inputs.lengths)
  result["wall_seconds"] = time.perf_counter() - t0
  return result


def synthetic_workload(args, lengths):
  t0 = time.perf_counter()
  inputs, targets = synthetic_examples(args.n, args.seed)
  result = compare("synthetic long-tailed", inputs, targets, "bench_data_synthetic", lengths, args)
  row, _ = run_pipeline("bench_data_synthetic", lengths, args.batch, args.seed, args.n, args.window)
  result["runs"].append(row)
  result["wall_seconds"] = time.perf_counter() - t0
  return result


def print_table(results: list[dict]) -> None:
  cols = ("rows", "ex/row", "enc", "dec", "all", "ex/s", "tok/s", "rows x", "all x", "ex/s x")
  print(f"{'workload / run':58s}" + "".join(f"{c:>10s}" for c in cols))
  for res in results:
    print(f"{res['workload']} ({res['num_examples']} examples)")
    ref = next((r for r in res["runs"] if r["run"].startswith("seqio")), None)
    for r in res["runs"]:
      ratios = ("", "", "")
      if ref is not None:
        ratios = (
          f"{r['rows'] / ref['rows']:.3f}" if r["examples"] == ref["examples"] else "-",
          f"{r['non_pad_overall'] / ref['non_pad_overall']:.3f}",
          f"{r['examples_per_s'] / ref['examples_per_s']:.1f}",
        )
      cells = (
        f"{r['rows']}",
        f"{r['examples_per_row']:.2f}",
        f"{r['non_pad_encoder']:.3f}",
        f"{r['non_pad_decoder']:.3f}",
        f"{r['non_pad_overall']:.3f}",
        f"{r['examples_per_s']:.0f}",
        f"{r['tokens_per_s']:.0f}",
        *ratios,
      )
      print(f"  {r['run']:56s}" + "".join(f"{c:>10s}" for c in cells))


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--n", type=int, default=50000, help="synthetic examples")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--lengths", default="1024,256", help="inputs,targets feature lengths")
  p.add_argument("--batch", type=int, default=32, help="rows per batch")
  p.add_argument("--window", type=int, default=1024, help="examples packed together")
  p.add_argument("--strategy", default="first_fit_decreasing", choices=packing.STRATEGIES)
  p.add_argument("--mixture", default="flan_holdout_nli_train")
  p.add_argument(
    "--real_examples", type=int, default=20480, help="examples drawn from the real mixture"
  )
  p.add_argument("--data_dir", default=str(SHARED / "data" / "tfds"))
  p.add_argument("--vocab", default=str(SHARED / "vocab" / "t5_spiece.model"))
  p.add_argument("--skip_real", action="store_true")
  p.add_argument("--skip_synthetic", action="store_true")
  p.add_argument("--skip_seqio", action="store_true")
  p.add_argument("--out", default=None, help="write the results as JSON here")
  args = p.parse_args(argv)
  li, lt = (int(x) for x in args.lengths.split(","))
  lengths = {"inputs": li, "targets": lt}
  results = []
  if not args.skip_real:
    if not pathlib.Path(args.data_dir).is_dir() or not pathlib.Path(args.vocab).is_file():
      print(
        f"skipping the real workload: no data at {args.data_dir} or no vocabulary at "
        f"{args.vocab} (pass --data_dir / --vocab, or --skip_real)"
      )
    else:
      results.append(real_workload(args, lengths))
  if not args.skip_synthetic:
    results.append(synthetic_workload(args, lengths))
  print_table(results)
  if args.out:
    pathlib.Path(args.out).write_text(
      json.dumps(
        {
          "lengths": lengths,
          "window": args.window,
          "batch": args.batch,
          "seed": args.seed,
          "strategy": args.strategy,
          "results": results,
        },
        indent=2,
      )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
