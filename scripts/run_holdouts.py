"""Runs the 12 leave-one-cluster-out experiments and joins their results into one table.

Each run is `python -m flan.train` with the cluster's experiment gin
(configs/experiments/holdout_<cluster>.gin, or the --gin_file list given instead),
HELDOUT_CLUSTER and MIXTURE_OR_TASK_NAME set to the cluster and MODEL_DIR to ROOT/<cluster>;
the trainer evaluates the held-out cluster at the end and writes its results.json under
ROOT/<cluster>/eval/. The runs go one after another (each
uses every device); a cluster whose results.json already exists is skipped, so an
interrupted sweep resumes. Finally ROOT/holdouts.md and ROOT/holdouts.json hold the
paper's main result format: per held-out cluster, the zero-shot baseline beside the
instruction-tuned model.

Every `--gin.X=V` flag is passed through to each run. Before anything runs (and for
--dry_run), each command's gin flags are parsed as flan.train parses them, so a missing
VOCABULARY or a misspelt binding is one `error:` line now, not twelve failed runs later.

  python scripts/run_holdouts.py --root=/tmp/holdouts \
      --gin.VOCABULARY=\"../shared/vocab/t5_spiece.model\" \
      --gin.INITIAL_CHECKPOINT_PATH=\"/ckpts/t5_1_1_lm100k_base\" \
      [--clusters=nli,commonsense] [--dry_run | --collect_only] [--gin.TRAIN_STEPS=...]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flan.data import clusters as clusters_lib
from flan.errors import UserError
from flan.evaluation import report


def command(
  cluster: str, root: pathlib.Path, gin_files: list[str], bindings: list[str]
) -> list[str]:
  """The `python -m flan.train` command of one hold-out run."""
  cmd = [sys.executable, "-m", "flan.train"]
  gin_files = gin_files or [f"configs/experiments/holdout_{cluster}.gin"]
  cmd += [f"--gin_file={f}" for f in gin_files]
  cmd += [
    f'--gin.HELDOUT_CLUSTER="{cluster}"',
    f'--gin.MIXTURE_OR_TASK_NAME="flan_holdout_{cluster}_train"',
    f'--gin.MODEL_DIR="{root / cluster}"',
  ]
  cmd += [f"--gin.{b}" for b in bindings]
  return cmd


def check(cluster: str, cmd: list[str]) -> None:
  """Parses one command's gin flags as `python -m flan.train` will (raises UserError)."""
  import gin

  from flan import cli, train

  gin.clear_config()
  entry = train.configurable_train()  # registers train() and its options, as main does
  try:
    cli.parse_gin_flags(
      cmd[3:],  # after python -m flan.train
      prog="python -m flan.train",
      run_config="configs/runs/finetune.gin",
      entry=entry,
    )
  except UserError as e:
    raise UserError(f"the {cluster} run would fail: {e.message}") from None
  finally:
    gin.clear_config()


def results_path(root: pathlib.Path, cluster: str) -> pathlib.Path:
  """MODEL_DIR/eval/results.json: where flan.train and flan.evaluate both write the report."""
  return root / cluster / "eval" / "results.json"


def collect(root: pathlib.Path, clusters: list[str]) -> dict[str, dict | None]:
  """results.json of each cluster (None where a run has not finished)."""
  out = {}
  for cluster in clusters:
    path = results_path(root, cluster)
    out[cluster] = json.loads(path.read_text()) if path.is_file() else None
  return out


def write_table(root: pathlib.Path, results: dict[str, dict | None]) -> str:
  """Writes ROOT/holdouts.md and ROOT/holdouts.json; returns the Markdown."""
  text = (
    "\n\n".join(
      [
        "# Leave-one-cluster-out results",
        "Score per held-out cluster: the mean over its datasets of the test score of the "
        "template chosen on the dev split (mean over templates where there is none).",
        report.holdout_table(results, key="dev_selected"),
        "## Mean over templates",
        report.holdout_table(results, key="mean_over_templates"),
      ]
    )
    + "\n"
  )
  root.mkdir(parents=True, exist_ok=True)
  (root / "holdouts.md").write_text(text)
  summary = {c: (r["models"] if r else None) for c, r in results.items()}
  summary = {
    c: ({m: v["cluster"] for m, v in models.items()} if models else None)
    for c, models in summary.items()
  }
  (root / "holdouts.json").write_text(json.dumps(summary, indent=1) + "\n")
  return text


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[0],
    epilog="Every other flag must be --gin.X=V; it is passed through to each run, after "
    'the gin files (e.g. --gin.VOCABULARY=\\"spiece.model\\" --gin.TRAIN_STEPS=1000).',
  )
  parser.add_argument("--root", required=True, help="parent of the 12 MODEL_DIRs")
  parser.add_argument(
    "--gin_file",
    action="append",
    default=[],
    help="gin files for every run, in order (default: each cluster's "
    "configs/experiments/holdout_<cluster>.gin)",
  )
  parser.add_argument(
    "--clusters",
    default=",".join(clusters_lib.CLUSTERS),
    help="comma-separated subset of the 12 clusters",
  )
  parser.add_argument("--dry_run", action="store_true", help="print the commands only")
  parser.add_argument(
    "--collect_only", action="store_true", help="only join existing results into the table"
  )
  parser.add_argument(
    "--rerun", action="store_true", help="run clusters whose results.json already exists too"
  )
  args, rest = parser.parse_known_args(argv)
  bindings = []
  for a in rest:
    if not a.startswith("--gin."):
      parser.error(
        f"unrecognised argument {a!r}; extra gin bindings look like --gin.TRAIN_STEPS=1000"
      )
    bindings.append(a[len("--gin.") :])
  try:
    args.clusters = [clusters_lib.check_cluster(c) for c in args.clusters.split(",") if c]
  except ValueError as e:
    parser.error(str(e))
  return args, bindings


def main(argv: list[str] | None = None) -> int:
  args, bindings = parse_args(sys.argv[1:] if argv is None else argv)
  root = pathlib.Path(args.root).resolve()
  failed = []
  if not args.collect_only:
    try:
      for cluster in args.clusters:
        check(cluster, command(cluster, root, args.gin_file, bindings))
    except UserError as e:
      print(f"error: {e.message} (--gin.X=V flags are passed to every run)", file=sys.stderr)
      return 1
    if args.dry_run:
      print(
        f"[holdouts] {len(args.clusters)} commands; their gin flags parse as flan.train "
        "parses them; every --gin.X=V given here is passed through:",
        file=sys.stderr,
      )
    for cluster in args.clusters:
      cmd = command(cluster, root, args.gin_file, bindings)
      if args.dry_run:
        print(shlex.join(cmd))
        continue
      if results_path(root, cluster).is_file() and not args.rerun:
        print(f"[holdouts] {cluster}: results exist, skipping (--rerun to redo)", flush=True)
        continue
      print(f"[holdouts] {cluster}: {shlex.join(cmd)}", flush=True)
      if subprocess.run(cmd, cwd=ROOT, check=False).returncode != 0:
        failed.append(cluster)
        print(f"[holdouts] {cluster}: FAILED, continuing with the next cluster", flush=True)
  if args.dry_run:
    return 0
  print(write_table(root, collect(root, args.clusters)))
  if failed:
    print(f"[holdouts] failed runs: {', '.join(failed)}", file=sys.stderr)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
