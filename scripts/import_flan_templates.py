"""Converts FLAN's original `PATTERNS` dict into our `templates/<dataset>.yaml` files.

    python scripts/import_flan_templates.py PATH/TO/FLAN/flan/data/templates.py --out templates/
    python scripts/import_flan_templates.py FLAN.py --out /tmp/t --rename wmt16:sent1=en

The file is read with `ast`, never imported or executed: only the literal
`PATTERNS = {key: [(input, target), ...], ...}` assignment is used. For each pattern key:
  * the key becomes our dataset name(s) (`KEY_TO_DATASETS`; keys of configs outside the 62
    datasets, e.g. true_case, are skipped and reported);
  * `{options_}` / `{options_str}` become `{options}`, and `--rename` applies field renames;
  * FLAN v1's stray `n` after a placeholder before a newline (`{hypothesis}n\\n`) is fixed;
  * fields that our preprocessor of the dataset does not emit are reported (the file is
    still written: edit it or the preprocessor, registration validates it).
"""

from __future__ import annotations

import argparse
import ast
import json
import pathlib
import re
import sys
from collections.abc import Mapping, Sequence

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flan.data import datasets as datasets_lib
from flan.data import templates as templates_lib

WMT16 = tuple(d.name for d in datasets_lib.DATASETS if d.name.startswith("wmt16_"))
# FLAN pattern key -> our dataset names (identity for keys not listed).
KEY_TO_DATASETS: Mapping[str, tuple[str, ...]] = {
    "glue_mrpc": ("mrpc",),
    "glue_qqp": ("qqp",),
    "squad_v1": ("squad",),
    "para_crawl": ("para_crawl_enes",),
    "wmt16_translate": WMT16,
    # Not among the paper's 62 datasets (see flan/data/datasets.py); squad_v2 shares `squad`.
    "squad_v2": (),
    "true_case": (),
    "word_segment": (),
    "wsc273": (),
}
FIELD_RENAMES: Mapping[str, str] = {"options_": "options", "options_str": "options"}
STRAY_N = re.compile(r"(\{\w+\})n\n")


def read_patterns(path: str | pathlib.Path) -> dict[str, list[tuple[str, str]]]:
  """The literal `PATTERNS` dict of a FLAN templates file, parsed without running it."""
  tree = ast.parse(pathlib.Path(path).read_text(encoding="utf-8"), filename=str(path))
  for node in tree.body:
    targets = node.targets if isinstance(node, ast.Assign) else (
        [node.target] if isinstance(node, ast.AnnAssign) else [])
    if any(isinstance(t, ast.Name) and t.id == "PATTERNS" for t in targets):
      try:
        patterns = ast.literal_eval(node.value)
      except ValueError as e:
        raise ValueError(f"{path}: PATTERNS is not a plain literal ({e}).") from None
      break
  else:
    raise ValueError(f"{path}: no top-level `PATTERNS = {{...}}` assignment.")
  if not isinstance(patterns, dict):
    raise ValueError(f"{path}: PATTERNS must be a dict, got {type(patterns).__name__}.")
  for key, items in patterns.items():
    if not all(isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(s, str)
                                                                     for s in p)
               for p in items):
      raise ValueError(f"{path}: PATTERNS[{key!r}] must be a list of (input, target) "
                       "string pairs.")
  return {k: [tuple(p) for p in v] for k, v in patterns.items()}


def parse_renames(specs: Sequence[str]) -> dict[str | None, dict[str, str]]:
  """`[KEY:]OLD=NEW` strings -> {KEY or None (all keys): {OLD: NEW}}."""
  out: dict[str | None, dict[str, str]] = {}
  for spec in specs:
    m = re.fullmatch(r"(?:(\w+):)?(\w+)=(\w+)", spec)
    if not m:
      raise ValueError(f"--rename {spec!r}: expected [FLAN_KEY:]OLD=NEW.")
    out.setdefault(m.group(1), {})[m.group(2)] = m.group(3)
  return out


def convert_text(text: str, renames: Mapping[str, str]) -> tuple[str, bool]:
  """Fixes a stray `n` and renames placeholders; returns (text, whether `n` was fixed)."""
  fixed = STRAY_N.sub(r"\1\n\n", text)  # FLAN meant "\n\n".
  names = {**FIELD_RENAMES, **renames}
  renamed = templates_lib.PLACEHOLDER.sub(
      lambda m: "{" + names.get(m.group(1), m.group(1)) + "}", fixed)
  return renamed, fixed != text


def _known_fields(dataset: str) -> set[str] | None:
  try:
    from flan.data import preprocessors
    return set(preprocessors.get(dataset).fields) - {"answers", "references"}
  except Exception:  # pylint: disable=broad-except
    return None  # no preprocessor yet: cannot check.


def to_yaml(dataset: str, pairs: Sequence[tuple[str, str]]) -> str:
  """Our template file format: one double-quoted line per input / target."""
  lines = [f"dataset: {dataset}", "templates:"]
  for inputs, target in pairs:
    lines.append(f"  - input: {json.dumps(inputs, ensure_ascii=False)}")
    lines.append(f"    target: {json.dumps(target, ensure_ascii=False)}")
  return "\n".join(lines) + "\n"


def convert(patterns: Mapping[str, Sequence[tuple[str, str]]],
            renames: Mapping[str | None, Mapping[str, str]] | None = None
            ) -> tuple[dict[str, str], list[str]]:
  """FLAN patterns -> ({dataset: yaml text}, report lines)."""
  renames = renames or {}
  files, report = {}, []
  for key, pairs in patterns.items():
    targets = KEY_TO_DATASETS.get(key, (key,) if key in datasets_lib.BY_NAME else None)
    if not targets:
      why = "not among the 62 datasets" if targets is not None else "unknown pattern key"
      report.append(f"skipped {key!r}: {why}.")
      continue
    mapping = {**renames.get(None, {}), **renames.get(key, {})}
    converted, fixes = [], 0
    for pair in pairs:
      (inputs, fix_in), (target, fix_out) = (convert_text(t, mapping) for t in pair)
      converted.append((inputs, target))
      fixes += fix_in + fix_out
    if fixes:
      report.append(f"{key}: fixed {fixes} stray 'n' after a placeholder.")
    if len(converted) != templates_lib.NUM_TEMPLATES:
      report.append(f"{key}: has {len(converted)} templates (we expect "
                    f"{templates_lib.NUM_TEMPLATES}).")
    for dataset in targets:
      known = _known_fields(dataset)
      used = sorted({f for pair in converted for text in pair
                     for f in templates_lib.PLACEHOLDER.findall(text)})
      if known is None:
        report.append(f"{dataset}: no preprocessor registered; fields not checked "
                      f"({', '.join(used)}).")
      else:
        unknown = [f for f in used if f not in known]
        if unknown:
          report.append(f"{dataset} (from {key!r}): unmapped fields "
                        f"{', '.join('{' + f + '}' for f in unknown)}; our preprocessor "
                        f"emits {', '.join(sorted(known))}. Use --rename {key}:OLD=NEW.")
      files[dataset] = to_yaml(dataset, converted)
  return files, report


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("flan_templates", help="FLAN's flan/data/templates.py (or a file like it)")
  p.add_argument("--out", default=str(ROOT / "templates"), help="output directory")
  p.add_argument("--rename", action="append", default=[],
                 help="[FLAN_KEY:]OLD=NEW placeholder rename (repeatable)")
  p.add_argument("--overwrite", action="store_true", help="replace existing files")
  args = p.parse_args(argv)
  try:
    files, report = convert(read_patterns(args.flan_templates), parse_renames(args.rename))
  except (OSError, SyntaxError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  for dataset, text in sorted(files.items()):
    path = out / f"{dataset}.yaml"
    if path.exists() and not args.overwrite:
      report.append(f"{dataset}: {path} exists; kept it (pass --overwrite to replace).")
      continue
    path.write_text(text, encoding="utf-8")
  print(f"wrote {len(files)} dataset files to {out}")
  for line in report:
    print("  " + line)
  return 0


if __name__ == "__main__":
  sys.exit(main())
