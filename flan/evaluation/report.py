"""The evaluation report: aggregation as the FLAN paper reports it, and the output files.

`flan.evaluation.holdout` produces, per model ("tuned" and the zero-shot "baseline" of the
initial checkpoint), per dataset and template, the test (and dev) metrics; this module
summarises them and writes `output_dir/`:
  results.json                 everything, numbers finite (None where nothing applies);
  results.md                   per-dataset and per-cluster tables, baseline beside tuned;
  scores.png                   per-dataset score by template and the cluster summary;
  predictions/<model>/<dataset>.jsonl   one line per (template, split, example).
`holdout_table` joins the results of the 12 leave-one-cluster-out runs into the paper's
main table (scripts/run_holdouts.py).
"""

from __future__ import annotations

import collections
import io
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from etils import epath

from flan import paths as flan_paths

MODELS = ("baseline", "tuned")  # column order: the baseline beside the tuned model.
COLORS = {"baseline": "#9e9e9e", "tuned": "#1f77b4"}
PROGRESS_SECONDS = 10.0

# ----------------------------------------------------------------------------- aggregation


def summarize_dataset(templates: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """Mean over templates and the dev-selected template's test score.

  Args:
    templates: per template {"template": i, "counted": bool, "test": {"score"},
      "validation": {"score"} | None}. Only counted templates enter the summary.
  """
  counted = [t for t in templates if t["counted"]]
  test = [t["test"]["score"] for t in counted]
  out = {
    "mean": float(np.mean(test)) if test else None,
    "std": float(np.std(test)) if test else None,
    "min": float(np.min(test)) if test else None,
    "max": float(np.max(test)) if test else None,
    "dev_selected_template": None,
    "dev_selected": None,
  }
  with_dev = [t for t in counted if t.get("validation")]
  if with_dev:
    best = max(with_dev, key=lambda t: (t["validation"]["score"], -t["template"]))
    out["dev_selected_template"] = best["template"]
    out["dev_selected"] = best["test"]["score"]
  out["score"] = out["dev_selected"] if out["dev_selected"] is not None else out["mean"]
  return out


def summarize_cluster(datasets: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
  """Per-cluster averages over the datasets that were evaluated."""
  done = [d for d in datasets.values() if d.get("status") == "ok" and d["mean"] is not None]
  mean = lambda key: float(np.mean([d[key] for d in done])) if done else None
  return {
    "mean_over_templates": mean("mean"),
    "dev_selected": mean("score"),
    "num_datasets": len(done),
    "missing": sorted(n for n, d in datasets.items() if d.get("status") != "ok"),
  }


def is_finite_tree(tree: Any) -> bool:
  """True when every number in a JSON-like tree is finite (None counts as absent)."""
  if isinstance(tree, Mapping):
    return all(is_finite_tree(v) for v in tree.values())
  if isinstance(tree, (list, tuple)):
    return all(is_finite_tree(v) for v in tree)
  if isinstance(tree, float):
    return math.isfinite(tree)
  return True


# ----------------------------------------------------------------------------- writing


class EvalProgress:
  """Logs an evaluation's example-templates done and throughput, at most every PROGRESS_SECONDS."""

  def __init__(self, label: str, total: int):
    self.label, self.total, self.done = label, total, 0
    self.start = self.last = time.perf_counter()

  def update(self, n: int, what: str) -> None:
    self.done += n
    now = time.perf_counter()
    if now - self.last >= PROGRESS_SECONDS or self.done >= self.total:
      self.last = now
      rate = self.done / max(now - self.start, 1e-9)
      logging.info(
        "[eval %s] %d/%d example-templates (%.0f%%), %.1f/s; last: %s",
        self.label,
        self.done,
        self.total,
        100 * self.done / max(self.total, 1),
        rate,
        what,
      )


def _fmt(x: float | None) -> str:
  return "-" if x is None else f"{x:.1f}"


def markdown(results: Mapping[str, Any]) -> str:
  """Tables: per dataset (mean over templates, dev-selected) and the cluster average."""
  models = [m for m in MODELS if m in results["models"]]
  opts = results.get("options", {})
  lines = [
    f"# Held-out cluster: {results['cluster']}",
    "",
    f"{opts.get('num_shots', 0)}-shot; score = each dataset's first metric; "
    "mean = mean over templates; dev = test score of the template with the best "
    "dev score (mean when the dataset has no dev split).",
    "",
  ]
  header = ["dataset", "metric", "templates"]
  for m in models:
    header += [f"{m} mean", f"{m} dev (t)"]
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for name in results["datasets"]:
    first = results["models"][models[0]]["datasets"][name] if models else {}
    if first.get("status") != "ok":
      reason = (first.get("error") or "not evaluated").splitlines()[0][:100]
      lines.append(f"| {name} | missing: {reason} |" + " |" * (len(header) - 2))
      continue
    metric = first["metrics"][0]
    row = [name, metric, str(sum(t["counted"] for t in first["templates"]))]
    for m in models:
      d = results["models"][m]["datasets"][name]
      t = d["dev_selected_template"]
      row += [_fmt(d["mean"]), _fmt(d["score"]) + ("" if t is None else f" (t{t})")]
    lines.append("| " + " | ".join(row) + " |")
  row = ["**cluster average**", "", ""]
  for m in models:
    c = results["models"][m]["cluster"]
    row += [f"**{_fmt(c['mean_over_templates'])}**", f"**{_fmt(c['dev_selected'])}**"]
  lines += ["| " + " | ".join(row) + " |", ""]
  lines += ["## Per template (test metrics)", ""]
  for name in results["datasets"]:
    per = {m: results["models"][m]["datasets"][name] for m in models}
    if not models or per[models[0]].get("status") != "ok":
      continue
    lines += [
      f"### {name}",
      "",
      "| template | kind | " + " | ".join(models) + " |",
      "|---|---|" + "---|" * len(models),
    ]
    for i, t in enumerate(per[models[0]]["templates"]):
      scores = [
        ", ".join(f"{k} {v:.1f}" for k, v in per[m]["templates"][i]["test"]["metrics"].items())
        for m in models
      ]
      lines.append(f"| {t['template']} | {t['kind']} | " + " | ".join(scores) + " |")
    lines.append("")
  return "\n".join(lines)


# Metric families: panels of one family share one y axis, so equal heights mean equal scores.
# Every primary score is on a 0-100 scale; the correlations reach down to -100.
_CORRELATIONS = ("pearson", "spearman", "matthews")
FAMILY_LIMITS = {"score (0-100)": (0.0, 100.0), "correlation x100": (-100.0, 100.0)}
HATCH_LABEL = "hatched: turned around (not counted; ROUGE-1)"


def metric_family(metric: str) -> str:
  """The y axis a dataset's panel shares: "correlation x100" or "score (0-100)"."""
  return "correlation x100" if metric in _CORRELATIONS else "score (0-100)"


def figure(results: Mapping[str, Any]) -> Any:
  """The matplotlib figure of `chart`: one panel per dataset (test score by template,
  baseline vs tuned; dashed: the mean over counted templates), then the cluster summary.

  Panels of one metric family share one y axis (`FAMILY_LIMITS`); the hatching legend is
  drawn only on the panels that have hatched bars.
  """
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.lines import Line2D
  from matplotlib.patches import Patch

  models = [m for m in MODELS if m in results["models"]]
  names = [
    n
    for n in results["datasets"]
    if models and results["models"][models[0]]["datasets"][n].get("status") == "ok"
  ]
  panels = len(names) + 1
  cols = min(3, panels)
  rows = math.ceil(panels / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
  width = 0.8 / max(len(models), 1)
  for ax, name in zip(axes.flat, names):
    hatched = False
    for j, m in enumerate(models):
      d = results["models"][m]["datasets"][name]
      xs = [t["template"] for t in d["templates"]]
      ys = [t["test"]["score"] for t in d["templates"]]
      hatches = ["" if t["counted"] else "//" for t in d["templates"]]
      hatched |= any(hatches)
      bars = ax.bar(
        np.asarray(xs) + (j - (len(models) - 1) / 2) * width, ys, width, color=COLORS[m], label=m
      )
      for bar, hatch in zip(bars, hatches):
        bar.set_hatch(hatch)
      if d["mean"] is not None:
        ax.axhline(d["mean"], color=COLORS[m], linestyle="--", linewidth=1)
    first = results["models"][models[0]]["datasets"][name]
    family = metric_family(first["metrics"][0])
    ax.set_ylim(*FAMILY_LIMITS[family])
    ax.set_title(f"{name} ({first['metrics'][0]})", fontsize=10)
    ax.set_xlabel("template")
    ax.set_xticks(range(len(first["templates"])))
    ax.set_ylabel(f"test {family}")
    if hatched:
      ax.legend(
        handles=[Patch(facecolor="white", edgecolor="black", hatch="//", label=HATCH_LABEL)],
        fontsize=7,
      )
  summary = axes.flat[len(names)]
  labels = ["mean over templates", "dev-selected"]
  lowest = 0.0
  for j, m in enumerate(models):
    c = results["models"][m]["cluster"]
    ys = [c["mean_over_templates"] or 0.0, c["dev_selected"] or 0.0]
    lowest = min(lowest, *ys)
    summary.bar(
      np.arange(2) + (j - (len(models) - 1) / 2) * width, ys, width, color=COLORS[m], label=m
    )
  summary.set_ylim(-100.0 if lowest < 0 else 0.0, 100.0)
  summary.set_xticks(range(2), labels)
  summary.set_ylabel("average over datasets")
  summary.set_title(f"{results['cluster']}\naverage over datasets", fontsize=10)
  handles, _ = summary.get_legend_handles_labels()
  if names:
    handles.append(
      Line2D(
        [],
        [],
        color="black",
        linestyle="--",
        linewidth=1,
        label="dashed, dataset panels: mean over counted templates",
      )
    )
  summary.legend(handles=handles, fontsize=8)
  for ax in list(axes.flat)[panels:]:
    ax.axis("off")
  fig.tight_layout()
  return fig


def chart(results: Mapping[str, Any], path: str | os.PathLike) -> None:
  """Writes `figure(results)` as a PNG."""
  import matplotlib.pyplot as plt

  fig = figure(results)
  image = io.BytesIO()
  fig.savefig(image, format="png", dpi=100)
  flan_paths.path(path).write_bytes(image.getvalue())
  plt.close(fig)


def write_predictions(
  directory: str | os.PathLike, records: Sequence[Mapping[str, Any]]
) -> list[epath.Path]:
  """predictions/<model>/<dataset>.jsonl, one JSON object per evaluated example."""
  groups = collections.defaultdict(list)
  for r in records:
    groups[(r.get("model", "tuned"), r["dataset"])].append(r)
  paths = []
  for (model, dataset), rows in sorted(groups.items()):
    path = flan_paths.path(directory) / "predictions" / model / f"{dataset}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    paths.append(path)
  return paths


def write_all(
  output_dir: str | os.PathLike, results: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
) -> None:
  """Writes results.json, results.md, scores.png and the predictions files."""
  out = flan_paths.path(output_dir)
  out.mkdir(parents=True, exist_ok=True)
  if not is_finite_tree(results):
    raise ValueError("Evaluation produced a non-finite number; see the predictions files.")
  (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
  (out / "results.md").write_text(markdown(results) + "\n")
  chart(results, out / "scores.png")
  write_predictions(out, records)
  logging.info(
    "Evaluation results written to %s (results.json, results.md, scores.png, predictions/).", out
  )


# ----------------------------------------------------------------------------- all hold-outs


def holdout_table(
  results_by_cluster: Mapping[str, Mapping[str, Any] | None], key: str = "dev_selected"
) -> str:
  """The paper's main table: one row per held-out cluster, baseline beside tuned.

  Args:
    results_by_cluster: cluster -> its results.json (None: run missing).
    key: "dev_selected" or "mean_over_templates".
  """
  lines = [
    "| held-out cluster | datasets | zero-shot baseline | instruction-tuned | gain |",
    "|---|---|---|---|---|",
  ]
  totals = collections.defaultdict(list)
  for cluster, res in results_by_cluster.items():
    if res is None:
      lines.append(f"| {cluster} | - | (no results) | | |")
      continue
    row = {}
    for m in MODELS:
      c = res["models"].get(m, {}).get("cluster", {})
      row[m] = c.get(key)
      if row[m] is not None:
        totals[m].append(row[m])
    n = res["models"].get("tuned", res["models"].get("baseline", {})).get("cluster", {})
    gain = (
      None if row["tuned"] is None or row["baseline"] is None else row["tuned"] - row["baseline"]
    )
    lines.append(
      f"| {cluster} | {n.get('num_datasets', '-')} | {_fmt(row['baseline'])} | "
      f"{_fmt(row['tuned'])} | {_fmt(gain)} |"
    )
  avg = {m: float(np.mean(v)) if v else None for m, v in totals.items()}
  lines.append(f"| **average** | | {_fmt(avg.get('baseline'))} | {_fmt(avg.get('tuned'))} | |")
  return "\n".join(lines)
