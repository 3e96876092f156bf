"""Shows what a FLAN mixture or task feeds the model.

    python -m flan.show flan_holdout_nli_train --data_dir ../shared/data/tfds -n 3
    python -m flan.show flan_rte_t0_scoring --mock_data
    python -m flan.show --list

Prints each task's rate and share of the mixture, then the first N rendered examples per
task (inputs, targets, template index), as the tasks render them before tokenization.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import textwrap


def _parse(argv):
  p = argparse.ArgumentParser(
    prog="python -m flan.show",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("name", nargs="?", help="a FLAN mixture or task name")
  p.add_argument("--data_dir", default=None, help="TFDS data_dir (default: TFDS's own)")
  p.add_argument("-n", "--num_examples", type=int, default=5, help="examples per task")
  p.add_argument(
    "--mock_data",
    action="store_true",
    help="random examples from tfds.testing.mock_data (no prepared data needed)",
  )
  p.add_argument("--num_mock_examples", type=int, default=8)
  p.add_argument("--seed", type=int, default=0, help="seed of the template draw")
  p.add_argument("--num_templates", type=int, default=10)
  p.add_argument("--template_mode", default="instructions")
  p.add_argument(
    "--train_clusters", default=None, help="comma-separated clusters (number-of-clusters ablation)"
  )
  p.add_argument(
    "--flan_templates_dir",
    default=None,
    help="replication mode: FLAN's templates converted by "
    "scripts/import_flan_templates.py, rendered with FLAN's preprocessing",
  )
  p.add_argument("--max_chars", type=int, default=600, help="cut longer texts (0: never)")
  p.add_argument("--list", action="store_true", help="list the registered names")
  return p.parse_args(argv)


def _cut(text: str, max_chars: int) -> str:
  if max_chars and len(text) > max_chars:
    text = text[:max_chars] + f" [... {len(text) - max_chars} more chars]"
  return textwrap.indent(text, "    ")


def rate_table(mixture: str, rates: dict[str, float | None]) -> str:
  """One line per task: name, rate and share of the mixture's total (None: no data)."""
  total = sum(r for r in rates.values() if r) or 1.0
  width = max(len(n) for n in rates)
  lines = [f"{'task':<{width}}  {'rate':>10}  {'share':>7}"]
  for name, rate in sorted(rates.items(), key=lambda kv: -(kv[1] or 0)):
    if rate is None:
      lines.append(f"{name:<{width}}  {'-':>10}  {'-':>7}  (not prepared)")
    else:
      lines.append(f"{name:<{width}}  {rate:>10.1f}  {100 * rate / total:>6.2f}%")
  lines.append(
    f"{'total':<{width}}  {total:>10.1f}  {100.0:>6.2f}%  ({len(rates)} tasks in {mixture})"
  )
  return "\n".join(lines)


def show_task(task, n: int, seed: int, max_chars: int) -> str:
  """The first `n` rendered examples of each split of `task`."""
  out = []
  for split in task.source.splits:
    cols = task.source.columns(split, seed=seed, limit=n)
    total = task.source.num_input_examples(split)
    out.append(
      f"=== {task.name} [{split}] ({total} input examples; showing {len(cols['inputs'])} rows)"
    )
    for i in range(len(cols["inputs"])):
      extra = "".join(f"  {k}={cols[k][i]}" for k in ("option_idx", "is_correct") if k in cols)
      out.append(
        f"--- example_id={cols['example_id'][i]}  template_idx={cols['template_idx'][i]}{extra}"
      )
      out.append("  inputs:\n" + _cut(cols["inputs"][i], max_chars))
      out.append("  targets:\n" + _cut(cols["targets"][i], max_chars))
  return "\n".join(out)


def _inspect(name: str, args, tasks, examples) -> int:
  """Prints the table and examples; tasks without prepared data are listed, not fatal."""
  provider = tasks.get(name)
  members = getattr(provider, "tasks", [provider])
  missing = {}
  if hasattr(provider, "get_rate"):
    rates = {}
    for task in members:
      try:
        rates[task.name] = float(provider.get_rate(task))
      except examples.DataNotPreparedError as e:
        rates[task.name], missing[task.name] = None, e
    print(rate_table(name, rates))
  for task in members:
    print()
    if task.name in missing:
      print(f"=== {task.name}: no prepared data (see below)")
      continue
    try:
      print(show_task(task, args.num_examples, args.seed, args.max_chars))
    except examples.DataNotPreparedError as e:
      missing[task.name] = e
      print(f"=== {task.name}: no prepared data (see below)")
  if missing:
    print(
      f"\n{len(missing)} of {len(members)} tasks have no prepared data, e.g.:\n"
      f"{next(iter(missing.values()))}",
      file=sys.stderr,
    )
  return 1 if len(missing) == len(members) else 0


def main(argv=None) -> int:
  args = _parse(argv)
  from flan.data import (
    examples,  # heavy imports after --help.
    tasks,
  )

  if args.list:
    print("\n".join(tasks.registered_names()))
    return 0
  if not args.name:
    print("error: name a mixture or task (or pass --list).", file=sys.stderr)
    return 2
  try:
    tasks.register(
      data_dir=args.data_dir,
      num_templates=args.num_templates,
      template_mode=args.template_mode,
      train_clusters=args.train_clusters,
      flan_templates_dir=args.flan_templates_dir,
    )
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  mock = contextlib.nullcontext()
  if args.mock_data:
    import tensorflow_datasets as tfds

    mock = tfds.testing.mock_data(num_examples=args.num_mock_examples)
  try:
    with mock:
      return _inspect(args.name, args, tasks, examples)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
