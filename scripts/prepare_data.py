"""Downloads and prepares the TFDS builders of the 62 FLAN datasets.

    python scripts/prepare_data.py                              # all, TFDS's default data_dir
    python scripts/prepare_data.py --datasets rte,cb --data_dir ~/tfds
    python scripts/prepare_data.py --check --data_dir ../shared/data/tfds   # status only

Resumable: prepared builders are skipped, and a failure (network, disk, a missing manual
download) is reported and the next builder is tried. Builders that TFDS cannot download by
itself (xsum, story_cloze, newsroom, samsum) need their files in
<data_dir>/downloads/manual/ first; the table prints TFDS's instructions. Needs internet
and the `importlib_resources` package (TFDS's download code imports it).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
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


def main(argv=None) -> int:
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--datasets", default="", help="comma-separated FLAN dataset names")
  p.add_argument("--data_dir", default=None, help="TFDS data_dir (default: TFDS's own)")
  p.add_argument("--check", action="store_true", help="print the status; download nothing")
  args = p.parse_args(argv)
  try:
    specs = select(args.datasets)
  except KeyError as e:
    print(f"error: {e.args[0]}", file=sys.stderr)
    return 2
  rows = statuses(specs, args.data_dir)
  if not args.check:
    for i, row in enumerate(rows):
      if row.state == MISSING:
        print(f"preparing {row.tfds_name} ({row.dataset}) ...", flush=True)
        rows[i] = prepare(row, args.data_dir)
  print(table(rows))
  return 0 if all(r.state == PREPARED for r in rows) else 1


if __name__ == "__main__":
  sys.exit(main())
