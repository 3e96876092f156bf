"""Converts FLAN's original `PATTERNS` dict into template files for the replication mode.

    python scripts/import_flan_templates.py PATH/TO/FLAN/flan/templates.py --out templates_flan

FLAN's template text is FLAN's (Apache-2.0) and is not shipped with this project: a user
who has FLAN's `flan/templates.py` converts it here, then trains with
`--gin.DataOptions.flan_templates_dir` pointing at the output directory. There, every
example goes through FLAN's own preprocessing (`flan.data.preprocessors.flan_compat`) and the
rendered `(inputs, targets)` equal FLAN's byte for byte.

The file is read with `ast`, never imported or executed: only the literal
`PATTERNS = {key: [(input, target), ...], ...}` assignment is used. Every key becomes
`OUT/<key>.yaml` (our template file format, one entry per `(input, target)` pair), with the
text kept exactly, FLAN's slips included (e.g. the stray `n` in `{hypothesis}n\\n` of some
rte/anli/cb templates), and three placeholder renames that change no rendered byte:
`{options_}` and `{options_str}` (FLAN's pre-rendered OPTIONS block) become `{options}`, which
renders the same block; STS-B's `{answer_str}` becomes `{answer}` (see flan_compat).

Safety: the output directory belongs to this script. It refuses to write where a file it did
not write would be replaced (so never into the shipped `templates/`), and rewrites its own
files when run again. Each file is read back and compared with FLAN's text before the run
reports success.
"""

from __future__ import annotations

import argparse
import ast
import json
import pathlib
import sys
from collections.abc import Mapping, Sequence

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flan.data import templates as templates_lib
from flan.data.preprocessors import flan_compat

DEFAULT_OUT = ROOT / "templates_flan"
HEADER = "# Converted by scripts/import_flan_templates.py"
FIELD_RENAMES: Mapping[str, str] = {"options_": "options", "options_str": "options"}
KEY_RENAMES: Mapping[str, Mapping[str, str]] = {"stsb": {"answer_str": "answer"}}


class UnsafeOutputError(ValueError):
  """An output directory where writing would replace files this script did not write."""


def read_patterns(path: str | pathlib.Path) -> dict[str, list[tuple[str, str]]]:
  """The literal `PATTERNS` dict of a FLAN templates file, parsed without running it."""
  tree = ast.parse(pathlib.Path(path).read_text(encoding="utf-8"), filename=str(path))
  for node in tree.body:
    targets = (
      node.targets
      if isinstance(node, ast.Assign)
      else ([node.target] if isinstance(node, ast.AnnAssign) else [])
    )
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
    if not all(
      isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(s, str) for s in p)
      for p in items
    ):
      raise ValueError(f"{path}: PATTERNS[{key!r}] must be a list of (input, target) string pairs.")
  return {k: [tuple(p) for p in v] for k, v in patterns.items()}


def convert_text(key: str, text: str) -> str:
  """Applies the placeholder renames (nothing else changes)."""
  names = {**FIELD_RENAMES, **KEY_RENAMES.get(key, {})}
  return templates_lib.PLACEHOLDER.sub(
    lambda m: "{" + names.get(m.group(1), m.group(1)) + "}", text
  )


def to_yaml(key: str, pairs: Sequence[tuple[str, str]], source: str) -> str:
  """Our template file format: one JSON-quoted (ASCII) line per input / target."""
  lines = [
    f"{HEADER} from PATTERNS[{key!r}] of {source}.",
    "# FLAN's text (Apache-2.0, google-research/FLAN): do not edit, do not commit.",
    f"pattern_key: {key}",
    "templates:",
  ]
  for inputs, target in pairs:
    lines.append(f"  - input: {json.dumps(inputs)}")
    lines.append(f"    target: {json.dumps(target)}")
  return "\n".join(lines) + "\n"


def convert(
  patterns: Mapping[str, Sequence[tuple[str, str]]], source: str = "templates.py"
) -> tuple[dict[str, str], list[str]]:
  """FLAN patterns -> ({pattern key: file text}, report lines)."""
  known = flan_compat.pattern_keys()
  files, report = {}, []
  for key, pairs in patterns.items():
    converted = [(convert_text(key, i), convert_text(key, t)) for i, t in pairs]
    files[key] = to_yaml(key, converted, source)
    stray = sum(text.count("}n\n") for pair in pairs for text in pair)
    if stray:
      report.append(f"{key}: kept FLAN's {stray} stray 'n' after a placeholder (FLAN renders it).")
    if key not in known:
      report.append(f"{key}: no FLAN task config uses this key; written, never read.")
      continue
    used = {
      f for pair in converted for text in pair for f in templates_lib.PLACEHOLDER.findall(text)
    }
    unknown = sorted(used - set(known[key]))
    if unknown:
      report.append(
        f"{key}: fields {', '.join('{' + f + '}' for f in unknown)} are not "
        f"emitted by FLAN's preprocessing of this key ({', '.join(known[key])})."
      )
  return files, report


def check_out_dir(out: pathlib.Path, names: Sequence[str]) -> None:
  """Refuses an output directory where a file this script did not write would be replaced."""
  if out.resolve() == templates_lib.TEMPLATES_DIR.resolve():
    raise UnsafeOutputError(
      f"--out {out} is the project's own templates/ directory; write FLAN's templates to a "
      f"directory of their own, e.g. --out {DEFAULT_OUT.name}."
    )
  if out.exists() and not out.is_dir():
    raise UnsafeOutputError(f"--out {out} exists and is not a directory.")
  for name in names:
    path = out / name
    if path.exists() and not path.read_text(encoding="utf-8").startswith(HEADER):
      raise UnsafeOutputError(
        f"{path} exists and was not written by this script; choose "
        "another --out directory (nothing was written)."
      )


def write(
  files: Mapping[str, str], patterns: Mapping[str, Sequence[tuple[str, str]]], out: pathlib.Path
) -> None:
  """Writes every file, then reads each back to check it holds FLAN's text exactly."""
  import yaml

  check_out_dir(out, [f"{key}.yaml" for key in files])
  out.mkdir(parents=True, exist_ok=True)
  for key, text in files.items():
    (out / f"{key}.yaml").write_text(text, encoding="utf-8")
  for key, pairs in patterns.items():
    data = yaml.safe_load((out / f"{key}.yaml").read_text(encoding="utf-8"))
    back = [(t["input"], t["target"]) for t in data["templates"]]
    want = [(convert_text(key, i), convert_text(key, t)) for i, t in pairs]
    if back != want:  # an internal bug, not bad input: keep the traceback.
      raise AssertionError(f"{out / key}.yaml does not read back as FLAN's text.")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("flan_templates", help="FLAN's flan/templates.py (or a file like it)")
  p.add_argument(
    "--out",
    default=str(DEFAULT_OUT),
    help=f"output directory (default: {DEFAULT_OUT.name}/ in the checkout)",
  )
  args = p.parse_args(argv)
  try:
    patterns = read_patterns(args.flan_templates)
    files, report = convert(patterns, pathlib.Path(args.flan_templates).name)
    write(files, patterns, pathlib.Path(args.out))
  except (OSError, SyntaxError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"wrote {len(files)} pattern files to {args.out}")
  for line in report:
    print("  " + line)
  return 0


if __name__ == "__main__":
  sys.exit(main())
