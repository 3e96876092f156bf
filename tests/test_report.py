"""The report: aggregation as the paper reports it, and the files it writes."""

import json
import math

import pytest

from flan.evaluation import report


def _template(i, score, dev, counted=True, kind="rank_classification"):
  return {
    "template": i,
    "kind": kind,
    "counted": counted,
    "test": {"score": score, "metrics": {"accuracy": score}},
    "validation": None if dev is None else {"score": dev},
  }


def _results(tuned_scores, baseline_scores, cluster="nli"):
  models = {}
  for label, scores in (("tuned", tuned_scores), ("baseline", baseline_scores)):
    templates = [_template(i, s, s - 1) for i, s in enumerate(scores)]
    templates.append(
      _template(len(scores), 3.0, None, counted=False, kind="generation_turned_around")
    )
    datasets = {
      "rte": {
        "status": "ok",
        "metrics": ["accuracy"],
        "templates": templates,
        **report.summarize_dataset(templates),
      },
      "snli": {"status": "missing", "error": "snli is not prepared\nmore"},
    }
    models[label] = {"datasets": datasets, "cluster": report.summarize_cluster(datasets)}
  return {
    "cluster": cluster,
    "datasets": ["rte", "snli"],
    "options": {"num_shots": 0},
    "models": models,
  }


def test_summaries_mean_over_templates_and_dev_selected_template():
  templates = [
    {"template": 0, "counted": True, "test": {"score": 50.0}, "validation": {"score": 70.0}},
    {"template": 1, "counted": True, "test": {"score": 60.0}, "validation": {"score": 80.0}},
    {"template": 2, "counted": True, "test": {"score": 90.0}, "validation": {"score": 80.0}},
    {"template": 3, "counted": False, "test": {"score": 5.0}, "validation": {"score": 99.0}},
  ]
  out = report.summarize_dataset(templates)
  assert out["mean"] == pytest.approx(200 / 3)
  # Dev tie between t1 and t2: the lower index wins; turned-around t3 never counts.
  assert out["dev_selected_template"] == 1 and out["dev_selected"] == 60.0
  assert out["score"] == 60.0
  no_dev = report.summarize_dataset([dict(t, validation=None) for t in templates])
  assert no_dev["dev_selected"] is None and no_dev["score"] == pytest.approx(200 / 3)
  cluster = report.summarize_cluster(
    {"a": {"status": "ok", **out}, "b": {"status": "ok", **no_dev}, "c": {"status": "missing"}}
  )
  assert cluster["dev_selected"] == pytest.approx((60 + 200 / 3) / 2)
  assert cluster["missing"] == ["c"] and cluster["num_datasets"] == 2


def test_holdout_table_lists_each_cluster_with_baseline_and_gain():
  res = {
    "models": {
      m: {"cluster": {"dev_selected": v, "num_datasets": 2}}
      for m, v in (("baseline", 40.0), ("tuned", 55.5))
    }
  }
  table = report.holdout_table({"nli": res, "misc": None})
  assert "| nli | 2 | 40.0 | 55.5 | 15.5 |" in table
  assert "| misc | - | (no results)" in table
  assert "| **average** | | 40.0 | 55.5 | |" in table


def test_markdown_puts_the_baseline_beside_the_tuned_model_and_lists_missing_datasets():
  md = report.markdown(_results([60.0, 70.0], [50.0, 52.0]))
  lines = md.splitlines()
  header = next(line for line in lines if line.startswith("| dataset"))
  assert header.index("baseline mean") < header.index("tuned mean")
  assert "| rte | accuracy | 2 | 51.0 | 52.0 (t1) | 65.0 | 70.0 (t1) |" in lines
  assert any(line.startswith("| snli | missing: snli is not prepared |") for line in lines)
  assert "| **cluster average** |  |  | **51.0** | **52.0** | **65.0** | **70.0** |" in lines
  assert "| 2 | generation_turned_around | accuracy 3.0 | accuracy 3.0 |" in lines


def test_write_all_writes_json_markdown_chart_and_predictions(tmp_path):
  results = _results([60.0, 70.0], [50.0, 52.0])
  records = [
    {
      "model": "tuned",
      "dataset": "rte",
      "template": 0,
      "split": "test",
      "example_id": 0,
      "inputs": "premise \u00e9",
      "prediction": "yes",
    },
    {
      "model": "baseline",
      "dataset": "rte",
      "template": 0,
      "split": "test",
      "example_id": 0,
      "inputs": "premise",
      "prediction": "no",
    },
  ]
  report.write_all(tmp_path, results, records)
  assert json.loads((tmp_path / "results.json").read_text()) == results
  assert (tmp_path / "results.md").read_text().startswith("# Held-out cluster: nli")
  png = (tmp_path / "scores.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
  tuned = (tmp_path / "predictions" / "tuned" / "rte.jsonl").read_text(encoding="utf-8")
  assert [json.loads(line)["prediction"] for line in tuned.splitlines()] == ["yes"]
  assert "premise \u00e9" in tuned  # kept readable, not \\u-escaped


def test_chart_shares_one_y_axis_per_metric_family_and_hatching_legend_only_where_hatched():
  import matplotlib.pyplot as plt

  results = _results([12.5, 62.5], [10.0, 20.0])
  for model in results["models"].values():  # a second accuracy panel, nothing hatched
    templates = [_template(i, s, None) for i, s in enumerate((40.0, 45.0))]
    model["datasets"]["cb"] = {
      "status": "ok",
      "metrics": ["accuracy"],
      "templates": templates,
      **report.summarize_dataset(templates),
    }
    templates = [_template(i, s, None) for i, s in enumerate((-20.0, 30.0))]  # a correlation
    model["datasets"]["stsb"] = {
      "status": "ok",
      "metrics": ["pearson"],
      "templates": templates,
      **report.summarize_dataset(templates),
    }
  results["datasets"] += ["cb", "stsb"]
  fig = report.figure(results)
  try:
    panels = {ax.get_title().split(" ")[0]: ax for ax in fig.axes if ax.get_title()}
    assert panels["rte"].get_ylim() == panels["cb"].get_ylim() == (0.0, 100.0)
    assert panels["stsb"].get_ylim() == (-100.0, 100.0)
    legend_texts = lambda ax: (
      [t.get_text() for t in ax.get_legend().get_texts()] if (ax.get_legend()) else []
    )
    assert legend_texts(panels["rte"]) == [report.HATCH_LABEL]  # rte has a turned-around one
    assert report.HATCH_LABEL not in legend_texts(panels["cb"]) + legend_texts(panels["stsb"])
    assert "hatched" not in panels["cb"].get_xlabel()
  finally:
    plt.close(fig)


def test_write_all_refuses_non_finite_numbers(tmp_path):
  results = _results([60.0, math.nan], [50.0, 52.0])
  assert not report.is_finite_tree(results)
  with pytest.raises(ValueError, match="non-finite"):
    report.write_all(tmp_path, results, [])
  assert not (tmp_path / "results.json").exists()


def _run_holdouts():
  import importlib.util
  import pathlib

  path = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "run_holdouts.py"
  spec = importlib.util.spec_from_file_location("run_holdouts", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_run_holdouts_dry_run_prints_one_train_command_per_cluster(capsys, tmp_path, clean_gin):
  from flan.data import clusters

  script = _run_holdouts()
  assert (
    script.main(
      [
        f"--root={tmp_path}",
        "--gin_file=configs/models/tiny.gin",
        "--gin_file=configs/runs/finetune.gin",
        "--gin.VOCABULARY=None",
        "--gin.TRAIN_STEPS=5",
        "--dry_run",
      ]
    )
    == 0
  )
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == len(clusters.CLUSTERS) == 12
  for cluster, line in zip(clusters.CLUSTERS, lines):
    assert "-m flan.train --gin_file=configs/models/tiny.gin" in line
    assert f'HELDOUT_CLUSTER="{cluster}"' in line and "--gin.TRAIN_STEPS=5" in line
    assert f'MODEL_DIR="{tmp_path / cluster}"' in line


def test_run_holdouts_collects_results_into_one_table(tmp_path, capsys):
  script = _run_holdouts()
  for cluster, tuned in (("nli", [60.0, 70.0]), ("commonsense", [40.0, 44.0])):
    out = tmp_path / cluster / "eval"
    out.mkdir(parents=True)
    (out / "results.json").write_text(json.dumps(_results(tuned, [50.0, 52.0], cluster)))
  assert (
    script.main([f"--root={tmp_path}", "--clusters=nli,commonsense,sentiment", "--collect_only"])
    == 0
  )
  table = (tmp_path / "holdouts.md").read_text()
  assert "| nli | 1 | 52.0 | 70.0 | 18.0 |" in table
  assert "| commonsense | 1 | 52.0 | 44.0 | -8.0 |" in table
  assert "| sentiment | - | (no results) |" in table
  summary = json.loads((tmp_path / "holdouts.json").read_text())
  assert summary["sentiment"] is None and summary["nli"]["tuned"]["dev_selected"] == 70.0


def test_run_holdouts_uses_each_clusters_experiment_gin_by_default(capsys, tmp_path, clean_gin):
  script = _run_holdouts()
  assert (
    script.main([f"--root={tmp_path}", "--clusters=nli,misc", "--gin.VOCABULARY=None", "--dry_run"])
    == 0
  )
  lines = capsys.readouterr().out.strip().splitlines()
  assert "--gin_file=configs/experiments/holdout_nli.gin" in lines[0]
  assert "--gin_file=configs/experiments/holdout_misc.gin" in lines[1]
  for cluster in ("nli", "misc"):
    assert (script.ROOT / "configs" / "experiments" / f"holdout_{cluster}.gin").is_file()


def test_run_holdouts_refuses_commands_that_would_fail_in_one_line(capsys, tmp_path, clean_gin):
  script = _run_holdouts()
  assert script.main([f"--root={tmp_path}", "--dry_run"]) == 1  # no VOCABULARY
  out, err = capsys.readouterr()
  assert out == ""  # no command printed that would fail
  errors = [line for line in err.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "VOCABULARY is required but not set" in errors[0]
  assert "--gin.VOCABULARY=..." in errors[0] and "passed to every run" in errors[0]
  assert (
    script.main(
      [
        f"--root={tmp_path}",
        "--clusters=nli",
        "--gin.VOCABULARY=None",
        "--gin.TRAIN_STEP=5",
        "--dry_run",
      ]
    )
    == 1
  )
  assert "Did you mean TRAIN_STEPS?" in capsys.readouterr().err
