"""The command line of flan's entry points: gin files, `--gin.X=V` bindings, --help, errors.

As in t5x, `--gin.X=V` becomes the binding `X = V`, applied after every `--gin_file` in
order (`--gin_bindings='X = V'` works too). Unlike t5x, a mistyped name fails loudly with
the close matches, a bare string value (`--gin.MODEL_DIR=/tmp/run`) is quoted for you,
and a misspelt macro (`--gin.TRAIN_STEP=10`, which gin would silently accept as a new,
unused macro) is an error.

Every mistake in the command line or the user's gin files becomes a `flan.errors.UserError`:
the entry points print it as one `error:` line and exit 1 (argparse's usage errors exit 2);
any other exception is a bug in flan and keeps its traceback (FLAN_DEBUG=1 shows one for
user errors too). Only gin's public API is used to explain an error: its exception types,
`gin.get_configurable`, `gin.get_bindings`, `gin.query_parameter` and a finalize hook.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import importlib
import inspect
import logging
import os
import pathlib
import re
import sys
import textwrap
import tokenize
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import gin

from flan.errors import EXIT_USAGE, EXIT_USER_ERROR, UserError

ROOT = pathlib.Path(__file__).resolve().parent.parent  # the checkout: configs/ lives here
_MACRO = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# `NAME = value  # comment` lines of a run gin file: the macros --help lists.
_MACRO_LINE = re.compile(r"^([A-Z_][A-Z0-9_]*)\s*=\s*(.*?)\s*(?:#\s*(.*))?$")
# Modules whose gin configurables the command-line bindings may name.
_CONFIGURABLE_MODULES = (
  "flan.model.network",
  "flan.model.encoder_decoder",
  "flan.training.optimizer",
  "flan.training.options",
  "flan.data.tasks",
  "flan.train",
  "flan.evaluate",
)
_ENTRY_POINTS = ("flan.train", "flan.evaluate")  # they register their configurables in main
# t5x's habitual flags that flan takes as a gin macro: flag -> macro.
_T5X_FLAG_MACROS = {
  "tfds_data_dir": "DATA_DIR",
  "coordinator_address": "COORDINATOR_ADDRESS",
  "process_count": "NUM_PROCESSES",
  "process_index": "PROCESS_ID",
}
# t5x's flags that flan does not need, and what a user should know instead.
_T5X_FLAGS_IGNORED = {
  "alsologtostderr": "flan logs to stderr already",
  "logtostderr": "flan logs to stderr already",
  "multiprocess_gpu": (
    "flan joins a multi-process job when COORDINATOR_ADDRESS is set "
    "(--coordinator_address, --process_count, --process_index work too)"
  ),
}
MODEL_CONFIG = "configs/models/base.gin"  # its macros are every model gin's
_REQUIRED_SELECTOR = "gin.REQUIRED/gin.constant"  # what `X = %gin.REQUIRED` binds X to
EXIT_CODES = (
  f"exit status: 0 done; {EXIT_USER_ERROR} a mistake in the input (one `error:` "
  f"line says what and how to fix it; FLAN_DEBUG=1 adds the traceback); "
  f"{EXIT_USAGE} a malformed command line; any other failure prints a traceback "
  "(a bug: please report it)."
)

_referenced_macros: set[str] = set()  # filled by the finalize hook below


@gin.config.register_finalize_hook
def _record_referenced_macros(config: Any) -> None:
  """Finalize hook: remembers which macros the parsed config refers to (binds nothing)."""
  _referenced_macros.clear()
  for ref in gin.config.iterate_references(config, to=gin.get_configurable(gin.config.macro)):
    _referenced_macros.add(ref.scoped_selector.rsplit("/", 1)[0])
  return None


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


def run_macros(run_config: str | os.PathLike[str]) -> list[tuple[str, str, str]]:
  """(name, default, comment) of every macro a run gin file sets, in file order."""
  path = ROOT / run_config
  if not path.is_file():
    return []
  return [
    (m.group(1), m.group(2), m.group(3) or "")
    for m in map(_MACRO_LINE.match, path.read_text().splitlines())
    if m
  ]


def _epilog(run_config: str | None) -> str:
  lines = []
  if run_config:
    lines.append(f"macros (set with --gin.NAME=VALUE; defaults from {run_config}):")
    listed = set()
    for name, default, comment in run_macros(run_config):
      listed.add(name)
      default = "required" if default == "%gin.REQUIRED" else f"default {default}"
      lines.append(f"  {name} ({default})" + (f": {comment}" if comment else ""))
    model = [name for name, _, _ in run_macros(MODEL_CONFIG) if name not in listed]
    if model:
      lines.append(
        textwrap.fill(
          f"and the model gin's (configs/models/*.gin): {', '.join(model)}",
          90,
          initial_indent="  ",
          subsequent_indent="    ",
        )
      )
    lines.append("")
  lines.append(
    textwrap.fill(
      "t5x flags: --tfds_data_dir=D sets DATA_DIR; --coordinator_address, --process_count, "
      "--process_index set COORDINATOR_ADDRESS, NUM_PROCESSES, PROCESS_ID; --alsologtostderr, "
      "--logtostderr and --multiprocess_gpu are accepted and need nothing (flan logs to "
      "stderr; a coordinator address starts multi-process mode).",
      90,
    )
  )
  lines.append("")
  lines.append(textwrap.fill(EXIT_CODES, 90))
  return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
  """argparse with one `error:` line (no usage dump) for a malformed command line."""

  def error(self, message: str) -> None:  # type: ignore[override]
    print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def make_parser(
  prog: str = "python -m flan.train",
  doc: str | None = None,
  run_config: str | None = "configs/runs/finetune.gin",
) -> argparse.ArgumentParser:
  """The flags of a gin entry point; --help shows `doc`, the run's macros and an example."""
  parser = _Parser(
    prog=prog,
    description=doc or __doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
    epilog=_epilog(run_config),
  )
  parser.add_argument(
    "--gin_file",
    action="append",
    default=[],
    help="gin file (repeatable; later files override earlier ones)",
  )
  parser.add_argument(
    "--gin_bindings",
    action="append",
    default=[],
    help="'X = V' binding (repeatable; --gin.X=V is the same)",
  )
  parser.add_argument(
    "--gin_search_paths",
    default="",
    help="comma-separated roots for gin files and includes (besides the "
    "working directory and the checkout)",
  )
  for flag, macro in _T5X_FLAG_MACROS.items():
    parser.add_argument(f"--{flag}", help=f"t5x's flag: sets {macro}")
  for flag in _T5X_FLAGS_IGNORED:
    parser.add_argument(f"--{flag}", nargs="?", const=True, help=argparse.SUPPRESS)
  return parser


def _one_line(e: BaseException) -> str:
  """An exception's message in one line (gin's file/line context in parentheses)."""
  msg = str(e).split(" in config string:")[0]  # gin appends the whole config to some errors
  lines = [line.strip() for line in msg.splitlines() if line.strip()]
  if not lines:
    return type(e).__name__
  return lines[0] + (f" ({'; '.join(lines[1:])})" if lines[1:] else "")


def _syntax_message(e: SyntaxError, where: str) -> str:
  text = (e.text or "").strip()
  location = f"{e.filename}:{e.lineno}" if e.filename else where
  return f"{location}: gin syntax error: {e.msg}" + (f" in `{text}`" if text else "") + "."


def _close(name: str, candidates: Sequence[str], cutoff: float = 0.6) -> str:
  close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=cutoff)
  return f" Did you mean {' or '.join(close)}?" if close else ""


def _configurable_names() -> list[str]:
  """Names (`module.fn` and `fn`) of the configurables in flan's gin-facing modules."""
  names = []
  main = sys.modules.get("__main__")
  for module_name in _CONFIGURABLE_MODULES:
    module = sys.modules.get(module_name)
    if module is None and getattr(getattr(main, "__spec__", None), "name", None) == module_name:
      module = main  # `python -m flan.train`: the entry point runs as __main__
    for attr, value in vars(module).items() if module else ():
      if not callable(value) or attr.startswith("_"):
        continue
      try:
        gin.get_configurable(f"{module_name}.{attr}")
      except (ValueError, KeyError, TypeError):
        continue
      names += [f"{module_name}.{attr}", attr]
  return names


def _parameters(fn: Callable[..., Any]) -> Mapping[str, inspect.Parameter] | None:
  """The parameters of a configurable (of the class gin wraps, for a class)."""
  candidates = fn.__mro__ if inspect.isclass(fn) else (fn,)
  for candidate in candidates:
    try:
      params = inspect.signature(candidate).parameters
    except (TypeError, ValueError):
      continue
    kinds = {p.kind for p in params.values()}
    if not {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD} <= kinds:
      return params
  return None


def _binding_error(binding: str, e: Exception) -> str:
  """What is wrong with one command-line binding gin refused, with close matches."""
  key = binding.partition("=")[0].strip()
  flag = f"--gin.{key}"
  if isinstance(e, (SyntaxError, tokenize.TokenError)):
    reason = e.msg if isinstance(e, SyntaxError) else e.args[0]
    return (
      f"{flag}: gin cannot parse `{binding.strip()}` ({reason}); the value must be a "
      "Python literal or a gin reference."
    )
  try:
    _, selector, arg = gin.config_parser.parse_binding_key(key)
  except (ValueError, SyntaxError):
    return f"{flag}: {_one_line(e)}"
  try:
    fn = gin.get_configurable(selector)
  except (ValueError, KeyError):
    return (
      f"{flag}: no gin configurable is named {selector!r}.{_close(selector, _configurable_names())}"
    )
  params = _parameters(fn)
  if params is None:
    return f"{flag}: {_one_line(e)}"
  if arg not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
    return f"{flag}: {selector} has no parameter {arg!r}.{_close(arg, list(params))}"
  return f"{flag}: {_one_line(e)}"


@contextlib.contextmanager
def _gin_logging_silenced() -> Iterator[None]:
  """Drops gin's own ERROR log lines (a missing include logs each path it tried)."""
  gin_dir = os.path.dirname(gin.__file__)
  drop = lambda record: not record.pathname.startswith(gin_dir)
  root = logging.getLogger()
  root.addFilter(drop)
  try:
    yield
  finally:
    root.removeFilter(drop)


def _find_gin_file(path: str, search_paths: Sequence[str]) -> None:
  """Raises a UserError for a --gin_file found nowhere gin would look, with close names."""
  if any(os.path.isfile(os.path.join(root, path)) for root in ("", *search_paths)):
    return
  known = [str(p.relative_to(ROOT)) for p in ROOT.glob("configs/**/*.gin")]
  raise UserError(
    f"--gin_file={path}: no such file (looked in the working directory and "
    f"{', '.join(search_paths)}).{_close(path, known, cutoff=0.85)}"
  )


def _check_required_macros(run_config: str | None, bindings: Sequence[str], prog: str) -> None:
  """All `%gin.REQUIRED` macros of the run gin that are still unset, in one message."""
  missing = []
  for name, _, _ in run_macros(run_config) if run_config else ():
    try:
      value = gin.query_parameter(f"{name}/gin.macro.value")
    except ValueError:  # not bound at all: the finalize check names it
      continue
    if getattr(value, "scoped_selector", None) == _REQUIRED_SELECTOR:
      missing.append(name)
  if not missing:
    return
  given = [b.partition("=")[0].strip() for b in bindings]
  typos = [
    f"--gin.{g} looks like a typo of {name}"
    for g in given
    if _MACRO.match(g)
    for name in difflib.get_close_matches(g, missing, n=1, cutoff=0.6)
    if g != name
  ]
  raise UserError(
    f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required but not set; add "
    + " ".join(f"--gin.{m}=..." for m in missing)
    + (f" ({'; '.join(typos)})" if typos else f" (see {prog} --help)")
    + "."
  )


def _check_macros(bindings: Sequence[str]) -> None:
  """Rejects command-line macros that nothing refers to (typos of real ones)."""
  used = sorted(_referenced_macros)
  for binding in bindings:
    name = binding.partition("=")[0].strip()
    if _MACRO.match(name) and name not in _referenced_macros:
      raise UserError(
        f"--gin.{name} sets a macro that no gin file uses.{_close(name, used)} "
        f"Macros in use: {', '.join(used)}."
      )


def _check_required_args(entry: Callable[..., Any], prog: str) -> None:
  """Every gin.REQUIRED parameter of the entry point is bound (else one line naming them)."""
  try:
    bound = gin.get_bindings(entry, resolve_references=False)
    params = inspect.signature(entry).parameters
  except (ValueError, KeyError, TypeError):  # not a gin configurable: nothing to check
    return
  missing = [n for n, p in params.items() if p.default is gin.REQUIRED and n not in bound]
  if missing:
    name = entry.__name__
    raise UserError(
      f"{name}() needs {', '.join(missing)}: set them in a gin file or with "
      f"--gin.{name}.{missing[0]}=... (or the matching macro, e.g. "
      f"--gin.{missing[0].upper()}=...; see {prog} --help)."
    )


def parse_gin_flags(
  argv: Sequence[str] | None = None,
  *,
  prog: str = "python -m flan.train",
  doc: str | None = None,
  run_config: str | None = "configs/runs/finetune.gin",
  entry: Callable[..., Any] | None = None,
) -> argparse.Namespace:
  """Parses the command line into gin's config, or raises one `UserError`.

  Args:
    argv: the arguments (default: sys.argv[1:]).
    prog: the command, for --help and messages.
    doc: --help's description (the entry point's docstring, with an example).
    run_config: the run gin whose macros --help lists and whose required ones are checked.
    entry: the gin-configurable entry function; its gin.REQUIRED parameters are checked.

  Returns:
    The parsed flags (gin's config is parsed and finalized).
  """
  args = make_parser(prog, doc, run_config).parse_args(
    rewrite_args(sys.argv[1:] if argv is None else argv)
  )
  bindings = [_quote_bare_string(b) for b in args.gin_bindings]
  for flag, macro in _T5X_FLAG_MACROS.items():
    if getattr(args, flag) is not None:
      logging.info("t5x's --%s: binding %s.", flag, macro)
      bindings.insert(0, _quote_bare_string(f"{macro} = {getattr(args, flag)}"))
  for flag, why in _T5X_FLAGS_IGNORED.items():
    if getattr(args, flag) is not None:
      logging.info("--%s accepted: %s.", flag, why)
  search_paths = list(
    dict.fromkeys(  # in order, once each
      [p for p in args.gin_search_paths.split(",") if p] + [os.getcwd(), str(ROOT)]
    )
  )
  for path in search_paths:
    gin.add_config_file_search_path(path)
  if not args.gin_file:
    raise UserError(f"No --gin_file given; e.g. {prog} --gin_file=configs/smoke.gin.")
  for path in args.gin_file:
    _find_gin_file(path, search_paths)
  for name in _CONFIGURABLE_MODULES:
    if name in _ENTRY_POINTS:  # an entry point registers its own (`configurable_train()`)
      continue  # importing it here would load a second copy of the running `__main__`
    with contextlib.suppress(ImportError):
      importlib.import_module(name)
  with _gin_logging_silenced():
    try:
      gin.parse_config_files_and_bindings(args.gin_file, None, finalize_config=False)
    except SyntaxError as e:
      raise UserError(_syntax_message(e, "a --gin_file")) from None
    except ImportError as e:  # a gin `import` of a module that is not there
      raise UserError(
        f"{_one_line(e)}: a gin file imports a module that cannot be imported; "
        "check its spelling (and PYTHONPATH)."
      ) from None
    except (ValueError, OSError) as e:
      raise UserError(_one_line(e)) from None
    except TypeError as e:  # gin's package-resource lookup of an include found nowhere
      if not any(
        f.filename.endswith(os.path.join("gin", "resource_reader.py"))
        for f in traceback.extract_tb(e.__traceback__)
      ):
        raise
      context = _one_line(e).partition(" (")[2].rstrip(")")
      raise UserError(
        f"A gin include names a file found nowhere ({context}); searched {', '.join(search_paths)}."
      ) from None
    for binding in bindings:
      try:
        gin.parse_config(binding)
      except (ValueError, SyntaxError, tokenize.TokenError) as e:
        raise UserError(_binding_error(binding, e)) from None
  _check_required_macros(run_config, bindings, prog)
  try:
    gin.finalize()
  except ValueError as e:
    raise UserError(_one_line(e)) from None
  _check_macros(bindings)
  if entry is not None:
    _check_required_args(entry, prog)
  return args


@contextlib.contextmanager
def report_user_errors() -> Iterator[None]:
  """Turns a `UserError` into one `error:` line on stderr (FLAN_DEBUG=1: and a traceback).

  Everything else propagates with its traceback: it is a bug, not the user's mistake.
  """
  try:
    yield
  except UserError as e:
    if os.environ.get("FLAN_DEBUG"):
      traceback.print_exc()
    print(f"error: {getattr(e, 'message', None) or e}", file=sys.stderr)
