"""Command-line gin for `python -m flan.train`: files, `--gin.X=V` bindings, clear errors.

As in t5x, `--gin.X=V` becomes the binding `X = V`, applied after every `--gin_file` in
order (`--gin_bindings='X = V'` works too). Unlike t5x, a mistyped name fails loudly with
the close matches, a bare string value (`--gin.MODEL_DIR=/tmp/run`) is quoted for you,
and a misspelt macro (`--gin.TRAIN_STEP=10`, which gin would silently accept as a new,
unused macro) is an error.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import inspect
import logging
import os
import pathlib
import re
import sys
import traceback
from collections.abc import Iterator, Sequence

import gin

ROOT = pathlib.Path(__file__).resolve().parent.parent  # the checkout: configs/ lives here
_MACRO = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def rewrite_args(argv: Sequence[str]) -> list[str]:
  """`--gin.X=V` -> `--gin_bindings=X = V` (t5x's rewrite), every other flag unchanged."""
  out = []
  for arg in argv:
    if arg.startswith("--gin.") and "=" in arg:
      key, value = arg[len("--gin.") :].split("=", 1)
      out.append(f"--gin_bindings={key} = {value}")
    else:
      out.append(arg)
  return out


def _quote_bare_string(binding: str) -> str:
  """Quotes a value that is neither a Python literal nor a gin reference (%X, @f)."""
  key, sep, value = binding.partition("=")
  value = value.strip()
  if not sep or not value or value[0] in "%@([{'\"":
    return binding
  try:
    ast.literal_eval(value)
    return binding
  except (ValueError, SyntaxError):
    if value in ("True", "False", "None"):
      return binding
    logging.info("Quoting the gin value %s as a string.", value)
    return f"{key.strip()} = {value!r}"


def _known_macros() -> set[str]:
  refs = gin.config.iterate_references(gin.config._CONFIG)
  return {
    r.scoped_selector.rsplit("/", 1)[0] for r in refs if r.scoped_selector.endswith("/gin.macro")
  }


def _check_macros(bindings: Sequence[str]) -> None:
  """Rejects command-line macros that nothing refers to (typos of real ones)."""
  used = _known_macros()
  for binding in bindings:
    name = binding.partition("=")[0].strip()
    if _MACRO.match(name) and name not in used:
      close = difflib.get_close_matches(name, sorted(used), n=3, cutoff=0.6)
      hint = f" Did you mean {' or '.join(close)}?" if close else ""
      raise ValueError(
        f"--gin.{name} sets a macro that no gin file uses.{hint} Macros in use: "
        f"{', '.join(sorted(used))}."
      )


def _explain_gin_error(e: Exception) -> str:
  """gin's message plus close matches for an unknown configurable or parameter."""
  msg = str(e).split("\n  In ")[0].split(" in config string:")[0]
  m = re.search(r"No configurable matching '([^']+)'", msg)
  if m:
    names = sorted({k[1].split(".")[-1] for k in gin.config._REGISTRY})
    close = difflib.get_close_matches(m.group(1).split(".")[-1], names, n=3, cutoff=0.6)
    return msg + (f" Did you mean {' or '.join(close)}?" if close else "")
  m = re.search(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", msg)
  if m:
    try:
      fn = gin.config._REGISTRY.get_match(m.group(1)).wrapped
      params = list(inspect.signature(fn).parameters)
    except Exception:
      params = []
    close = difflib.get_close_matches(m.group(2), params, n=3, cutoff=0.6)
    return msg + (f" Did you mean {' or '.join(close)}?" if close else "")
  m = re.search(r"^(\w+)/macro\.value set to `%gin.REQUIRED`", msg)
  if m:
    return (
      f"The gin macro {m.group(1)} is required but not set; add "
      f"--gin.{m.group(1)}=... (see the comments in configs/runs/*.gin)."
    )
  m = re.search(r"No bindings specified for '([^']+)/gin.macro'", msg)
  if m:
    return (
      f"The gin macro {m.group(1)} is used but never set; add "
      f"--gin.{m.group(1)}=... or set it in a gin file."
    )
  return msg


def parse_gin_flags(argv: Sequence[str] | None = None) -> argparse.Namespace:
  """Parses --gin_file / --gin_bindings / --gin.X=V / --gin_search_paths into gin's config."""
  parser = argparse.ArgumentParser(prog="python -m flan.train", description=__doc__.split("\n")[0])
  parser.add_argument("--gin_file", action="append", default=[], help="gin file (repeatable)")
  parser.add_argument("--gin_bindings", action="append", default=[], help="'X = V' binding")
  parser.add_argument("--gin_search_paths", default="", help="comma-separated include roots")
  args = parser.parse_args(rewrite_args(sys.argv[1:] if argv is None else argv))
  for path in [p for p in args.gin_search_paths.split(",") if p] + [os.getcwd(), str(ROOT)]:
    gin.add_config_file_search_path(path)
  if not args.gin_file:
    raise ValueError("No --gin_file given; e.g. --gin_file=configs/smoke.gin.")
  bindings = [_quote_bare_string(b) for b in args.gin_bindings]
  try:
    gin.parse_config_files_and_bindings(args.gin_file, bindings, finalize_config=False)
  except (ValueError, SyntaxError, OSError) as e:
    raise ValueError(_explain_gin_error(e)) from None
  _check_macros(bindings)
  try:
    gin.finalize()  # also where unset %gin.REQUIRED macros are reported
  except ValueError as e:
    raise ValueError(_explain_gin_error(e)) from None
  return args


@contextlib.contextmanager
def report_user_errors() -> Iterator[None]:
  """Turns a user error into one line on stderr and exit status 1 (FLAN_DEBUG=1: traceback)."""
  from flan.data import examples
  from flan.training import checkpoints
  from flan.training import train_step as trainer

  user_errors = (
    ValueError,
    FileNotFoundError,
    PermissionError,
    checkpoints.CheckpointError,
    trainer.NonFiniteLossError,
    examples.DataNotPreparedError,
  )
  try:
    yield
  except user_errors as e:
    if os.environ.get("FLAN_DEBUG"):
      traceback.print_exc()
    print(f"error: {_explain_gin_error(e)}", file=sys.stderr)
  except RuntimeError as e:
    m = re.search(r"Required bindings for `(\w+)` not provided in config: \[(.*)\]", str(e))
    if not m:
      raise
    names = [n.strip(" '") for n in m.group(2).split(",")]
    print(
      f"error: {m.group(1)}() needs {', '.join(names)}: set them in a gin file or with "
      f"--gin.{m.group(1)}.{names[0]}=... (or the matching macro, e.g. "
      f"--gin.{names[0].upper()}=...).",
      file=sys.stderr,
    )
