"""Downloads and prepares the TFDS builders of the 62 FLAN datasets.

    python scripts/prepare_data.py                              # all, TFDS's default data_dir
    python scripts/prepare_data.py --datasets rte,cb --data_dir ~/tfds
    python scripts/prepare_data.py --check --data_dir ../shared/data/tfds   # status only
    python scripts/prepare_data.py --cache /tmp/flan_tokens --mixture flan_holdout_nli_train \
        --data_dir ../shared/data/tfds --vocabulary ../shared/vocab/t5_spiece.model --skip_missing

`--cache DIR` builds the token cache of a mixture's training tasks (see flan.data.token_cache)
from data that is already prepared, ahead of a pod run: set the same directory as CACHE_DIR
in the training gin (with the same VOCABULARY, RANDOM_SEED and template knobs) and every
host memory-maps its own rows instead of reading and tokenizing them.

Resumable: prepared builders are skipped, and a failure (network, disk, a missing manual
download) is reported and the next builder is tried. Offline, it stops at once with one
`error:` line (a 5 s connectivity probe) instead of retrying each download for minutes.
Builders that TFDS cannot download by itself (xsum, story_cloze, newsroom, samsum) need their
files in <data_dir>/downloads/manual/ first; the table prints TFDS's instructions. Needs
internet and the `importlib_resources` package (TFDS's download code imports it).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import socket
import sys
from collections.abc import Sequence

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flan.data import datasets as datasets_lib

PREPARED, MISSING, MANUAL, FAILED = "prepared", "missing", "needs manual download", "failed"


@dataclasses.dataclass
class Row:
  dataset: str
  tfds_name: str
  state: str
  detail: str = ""


def _tfds():
  import tensorflow_datasets as tfds

  return tfds


def manual_dir(data_dir: str | None) -> pathlib.Path:
  """Where TFDS looks for manually downloaded files (its default download_dir/manual)."""
  root = data_dir or _tfds().core.constants.get_default_data_dir()
  return pathlib.Path(os.path.expanduser(root)) / "downloads" / "manual"


def _has_files(path: pathlib.Path) -> bool:
  return path.is_dir() and any(path.iterdir())


def status(dataset: str, tfds_name: str, data_dir: str | None) -> Row:
  """Whether `tfds_name` is prepared in `data_dir` (no download, no network)."""
  try:
    builder = _tfds().builder(tfds_name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except
    return Row(dataset, tfds_name, FAILED, f"cannot build: {type(e).__name__}: {e}")
  if builder.is_prepared():
    splits = ", ".join(f"{k} {v.num_examples}" for k, v in builder.info.splits.items())
    return Row(dataset, tfds_name, PREPARED, splits)
  instructions = " ".join(str(getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", "") or "").split())
  where = manual_dir(data_dir)
  if datasets_lib.get(dataset).manual_download and not _has_files(where):
    return Row(
      dataset,
      tfds_name,
      MANUAL,
      f"put the files in {where}: {instructions or 'see the TFDS catalog page'}",
    )
  return Row(dataset, tfds_name, MISSING)


def select(names: str | None) -> list[datasets_lib.DatasetSpec]:
  """The datasets named in a comma-separated list (all 62 when empty)."""
  if not names:
    return list(datasets_lib.DATASETS)
  return [datasets_lib.get(n.strip()) for n in names.split(",") if n.strip()]


def statuses(specs: Sequence[datasets_lib.DatasetSpec], data_dir: str | None) -> list[Row]:
  return [status(spec.name, tfds_name, data_dir) for spec in specs for tfds_name in spec.tfds_names]


def _manual_hint(tfds_name: str, data_dir: str | None) -> str:
  """TFDS's manual download instructions, when the builder has any (e.g. some WMT pairs)."""
  try:
    text = _tfds().builder(tfds_name, data_dir=data_dir).MANUAL_DOWNLOAD_INSTRUCTIONS
  except Exception:  # pylint: disable=broad-except
    return ""
  text = " ".join(str(text or "").split())
  return f". If it needs manual files, put them in {manual_dir(data_dir)}: {text}" if text else ""


def prepare(row: Row, data_dir: str | None) -> Row:
  """Runs TFDS's download_and_prepare for one missing builder; never raises."""
  try:
    _tfds().builder(row.tfds_name, data_dir=data_dir).download_and_prepare()
  except Exception as e:  # pylint: disable=broad-except
    msg = " ".join(f"{type(e).__name__}: {e}".split())[:500]
    return Row(row.dataset, row.tfds_name, FAILED, msg + _manual_hint(row.tfds_name, data_dir))
  return status(row.dataset, row.tfds_name, data_dir)


# Where most FLAN builders download from; reachable iff the machine is online.
PROBE_HOSTS = ("storage.googleapis.com", "github.com", "huggingface.co")


def network_error(timeout: float = 5.0) -> str | None:
  """None when one of PROBE_HOSTS accepts a TCP connection on 443, else why not.

  Behind an HTTP(S) proxy the direct probe says nothing, so it is skipped.
  """
  if any(os.environ.get(v) for v in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")):
    return None
  reasons = []
  for host in PROBE_HOSTS:
    try:
      socket.create_connection((host, 443), timeout=timeout).close()
      return None
    except OSError as e:
      reasons.append(f"{host}: {e.strerror or type(e).__name__}")
  return "; ".join(reasons)


def table(rows: Sequence[Row]) -> str:
  """A fixed-width status table with a summary line."""
  w1 = max([len(r.dataset) for r in rows] + [7])
  w2 = max([len(r.tfds_name) for r in rows] + [7])
  lines = [f"{'dataset':<{w1}}  {'builder':<{w2}}  state"]
  for r in rows:
    detail = f"  ({r.detail})" if r.detail else ""
    lines.append(f"{r.dataset:<{w1}}  {r.tfds_name:<{w2}}  {r.state}{detail}")
  counts = {s: sum(r.state == s for r in rows) for s in (PREPARED, MISSING, MANUAL, FAILED)}
  lines.append(
    ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" (of {len(rows)} builders)"
  )
  return "\n".join(lines)


def build_cache(args: argparse.Namespace) -> int:
  """Writes the token cache of `args.mixture` into `args.cache`; prints one line per task."""
  import time

  from flan.data import examples, mixture_stream, tasks

  knobs = {} if args.num_templates is None else {"num_templates": args.num_templates}
  try:
    tasks.register(
      data_dir=args.data_dir,
      vocabulary=args.vocabulary,
      template_mode=args.template_mode,
      missing_datasets="skip" if args.skip_missing else "error",
      **knobs,
    )
    tasks.get(args.mixture)
    start = time.perf_counter()
    rows = mixture_stream.build_token_cache(args.mixture, args.seed, args.cache)
  except (ValueError, FileNotFoundError, examples.DataNotPreparedError) as e:
    print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
    return 2
  for r in rows:
    print(
      f"{r['task']:<40} {r['rows']:>7} rows {r['input_tokens']:>10} + "
      f"{r['target_tokens']:>9} tokens  {r['entry']}"
    )
  print(f"{len(rows)} tasks cached in {args.cache} ({time.perf_counter() - start:.1f} s)")
  return 0


def main(argv=None) -> int:
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--datasets", default="", help="comma-separated FLAN dataset names")
  p.add_argument("--data_dir", default=None, help="TFDS data_dir (default: TFDS's own)")
  p.add_argument("--check", action="store_true", help="print the status; download nothing")
  p.add_argument(
    "--cache",
    default=None,
    metavar="DIR",
    help="build the token cache of --mixture's training tasks in DIR",
  )
  p.add_argument("--mixture", default="flan_all_train", help="with --cache: what to cache")
  p.add_argument(
    "--vocabulary",
    default=None,
    help="with --cache: SentencePiece model (bytes when omitted), as the VOCABULARY of the run",
  )
  p.add_argument("--seed", type=int, default=0, help="with --cache: the run's RANDOM_SEED")
  p.add_argument(
    "--num_templates",
    type=int,
    default=None,
    help="with --cache: flan.data.tasks.register's num_templates (default 10)",
  )
  p.add_argument(
    "--template_mode",
    default="instructions",
    help="with --cache: flan.data.tasks.register's template_mode",
  )
  p.add_argument(
    "--skip_missing",
    action="store_true",
    help="with --cache: leave out the "
    "mixture's datasets that are not prepared (as MISSING_DATASETS='skip')",
  )
  args = p.parse_args(argv)
  if args.cache:
    return build_cache(args)
  try:
    specs = select(args.datasets)
  except KeyError as e:
    print(f"error: {e.args[0]}", file=sys.stderr)
    return 2
  rows = statuses(specs, args.data_dir)
  if not args.check and any(r.state == MISSING for r in rows):
    offline = network_error()
    if offline:
      print(
        f"error: no network ({offline}); preparing data downloads it: run this on a machine "
        "with internet access and copy the data_dir here (--check shows the status).",
        file=sys.stderr,
      )
      return 1
  if not args.check:
    for i, row in enumerate(rows):
      if row.state == MISSING:
        print(f"preparing {row.tfds_name} ({row.dataset}) ...", flush=True)
        rows[i] = prepare(row, args.data_dir)
  print(table(rows))
  return 0 if all(r.state == PREPARED for r in rows) else 1


if __name__ == "__main__":
  sys.exit(main())
