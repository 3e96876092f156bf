"""The import graph of `flan/` is the architecture: layered, one way, without cycles.

Layers, bottom up: the shared base (`flan.errors`, `flan.logs`, `flan.paths`, `flan.tokens`);
`flan.data` and
`flan.model` (neither imports the other); `flan.training` and `flan.evaluation` (neither
imports the other); the entry points (`flan.train`, `flan.evaluate`, `flan.convert`,
`flan.show`, `flan.cli`), which import no other entry point except `flan.cli`. Every import
counts: at the top of a module, inside a function, or under TYPE_CHECKING.
"""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "flan"
ENTRY_POINTS = ("flan.train", "flan.evaluate", "flan.convert", "flan.show", "flan.cli")
LAYERS = {"base": 0, "data": 1, "model": 1, "training": 2, "evaluation": 2, "entry": 3}
MODEL_CONSTRUCTORS = ()  # gin reaches the model through dynamic registration: no decorator


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
  return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
  """The flan modules `name` imports anywhere in its source."""
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
      targets = [f"{base}.{a.name}" for a in node.names] + [base]
    else:
      continue
    for target in targets:
      while target and target not in known:  # `from flan.data import tasks` names a module
        target = target.rpartition(".")[0]
      if target and target != name and target != "flan":
        found.add(target)
  return found


def _graph() -> dict[str, set[str]]:
  modules = _modules()
  return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _layer(name: str) -> str:
  if name in ENTRY_POINTS:
    return "entry"
  parts = name.split(".")
  if len(parts) > 2 and parts[1] in LAYERS:
    return parts[1]
  if name in ("flan.data", "flan.model", "flan.training", "flan.evaluation"):
    return parts[1]
  return "base"


def test_every_module_is_placed_in_a_layer():
  base = sorted(n for n in _modules() if _layer(n) == "base" and n != "flan")
  assert base == ["flan.errors", "flan.logs", "flan.paths", "flan.tokens"], (
    "a new top-level module needs a layer"
  )


def test_the_import_graph_has_no_cycle():
  graph = _graph()
  state: dict[str, int] = {}
  path: list[str] = []

  def visit(node):
    state[node] = 1
    path.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 1:
        cycle = path[path.index(nxt) :] + [nxt]
        pytest.fail("import cycle: " + " -> ".join(cycle))
      if nxt not in state:
        visit(nxt)
    path.pop()
    state[node] = 2

  for node in sorted(graph):
    if node not in state:
      visit(node)


def test_arrows_point_down_and_siblings_do_not_import_each_other():
  wrong = []
  for name, targets in _graph().items():
    for target in targets:
      a, b = _layer(name), _layer(target)
      if a == "entry" and b == "entry":
        ok = target == "flan.cli"  # the shared command line
      else:
        ok = LAYERS[b] < LAYERS[a] or (a == b and a != "entry")
      if not ok:
        wrong.append(f"{name} ({a}) imports {target} ({b})")
  assert not wrong, "\n".join(sorted(wrong))


def test_no_backend_query_in_the_model_code():
  offenders = [
    str(p.relative_to(ROOT))
    for p in (PACKAGE / "model").rglob("*.py")
    if "default_backend(" in p.read_text()
  ]
  assert not offenders, f"jax.default_backend() under flan/model: {offenders}"


def test_gin_is_applied_only_at_the_entry_points():
  decorator = re.compile(r"gin\.(configurable|register|external_configurable)\b")
  offenders = []
  for name, path in _modules().items():
    if _layer(name) == "entry":
      continue
    text = path.read_text()
    if decorator.search(text) or re.search(r"^\s*import gin\b", text, re.M):
      offenders.append(name)
  assert not offenders, f"gin below the entry points: {offenders}"


def test_class_names_are_unique_across_the_package():
  seen: dict[str, str] = {}
  duplicates = []
  for name, path in _modules().items():
    for node in ast.parse(path.read_text()).body:
      if isinstance(node, ast.ClassDef):
        if node.name in seen:
          duplicates.append(f"{node.name}: {seen[node.name]} and {name}")
        seen[node.name] = name
  assert not duplicates, duplicates
