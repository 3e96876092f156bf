"""The benchmark scripts run in their documented form and report our figure, the peer's and
the ratio (figures are not checked: speed is measured by the scripts, never by tests)."""

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _run(script: str, *args: str) -> str:
  env = {**os.environ, "XLA_FLAGS": "", "TF_CPP_MIN_LOG_LEVEL": "3"}  # one real CPU device
  proc = subprocess.run(
    [sys.executable, str(ROOT / "scripts" / script), *args],
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
    check=False,
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


def _has_peer() -> bool:
  try:
    import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    import transformers  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    return False
  return True


@pytest.mark.slow
def test_benchmark_train_reports_ours_the_peer_and_the_ratio(tmp_path):
  out = tmp_path / "train.json"
  stdout = _run(
    "benchmark_train.py",
    "--sizes",
    "tiny",
    "--synthetic",
    "--lengths",
    "128,32",
    "--windows",
    "1",
    "--num_batches",
    "2",
    "--out",
    str(out),
  )
  result = json.loads(out.read_text())
  (row,) = result["rows"]
  ours = row["runs"]["flan packed"]
  assert ours["tokens_per_s"] > 0 and 0 < ours["mfu"] < 1 and math.isfinite(ours["last_loss"])
  assert row["runs"]["flan packed"]["non_padding"] > row["runs"]["flan padded"]["non_padding"]
  assert "flan packed" in stdout and "tokens/s" in stdout
  if _has_peer():
    assert row["ratios"]["flan packed / peer padded"] > 0
    # Both frameworks are timed on the same padded batches, each once per window.
    flan_padded, peer_padded = row["runs"]["flan padded"], row["runs"]["peer padded"]
    assert sorted(i for r in peer_padded["records"] for i in r[2]) == [0, 1]
    assert sorted(i for r in flan_padded["records"] for i in r[2]) == [0, 1]
    assert peer_padded["non_padding"] == flan_padded["non_padding"]
    assert "flan packed / peer padded =" in stdout
  else:
    assert result["peer_skipped"] and "peer skipped" in stdout


@pytest.mark.slow
def test_benchmark_data_reports_ours_seqio_and_the_ratio(tmp_path):
  out = tmp_path / "data.json"
  stdout = _run("benchmark_data.py", "--skip_real", "--n", "3000", "--out", str(out))
  (result,) = json.loads(out.read_text())["results"]
  runs = {r["run"].split(" ")[0]: r for r in result["runs"]}
  assert runs["flan.data.packing"]["examples"] == runs["seqio"]["examples"] == 3000
  assert runs["flan.data.packing"]["non_pad_overall"] > runs["seqio"]["non_pad_overall"]
  assert "seqio EncDecFeatureConverter(pack=True)" in stdout


@pytest.mark.slow
def test_benchmark_scale_reports_first_and_cached_runs_and_the_fit(tmp_path, data_dir, vocab_path):
  out = tmp_path / "scale.json"
  stdout = _run(
    "benchmark_scale.py",
    "--scales",
    "300,600",
    "--datasets",
    "rte",
    "--data_dir",
    data_dir,
    "--vocabulary",
    vocab_path,
    "--out",
    str(out),
  )
  result = json.loads(out.read_text())
  rows = result["rows"]
  assert [(r["per_dataset"], r["processes"], r["mode"]) for r in rows] == [
    (n, p, m) for n in (300, 600) for p in (1, 2) for m in ("first", "cached")
  ]
  for r in rows:
    assert r["first_batch_s"] > 0 and r["peak_rss_mib"] > 0 and len(r["workers"]) == r["processes"]
  two = [r for r in rows if r["processes"] == 2]
  for r in two:  # the two shards together hold the task, each example once
    assert sum(w["examples_on_shard"] for w in r["workers"]) == r["examples"]
    assert min(w["examples_on_shard"] for w in r["workers"]) > 0
  for n in (300, 600):  # 2 shards read what 1 process reads
    assert len({r["examples"] for r in rows if r["per_dataset"] == n}) == 1
  assert set(result["summary"]) >= {"first/1p", "cached/1p", "first/2p", "cached/2p"}
  assert "fit cached/1p" in stdout


@pytest.mark.slow
def test_benchmark_eval_reports_both_methods_and_equal_scores(tmp_path, data_dir, vocab_path):
  out = tmp_path / "eval.json"
  stdout = _run(
    "benchmark_eval.py",
    "--sizes",
    "tiny",
    "--max_examples",
    "12",
    "--datasets",
    "rte,anli",
    "--decode_length",
    "2",
    "--passes",
    "1",
    "--data_dir",
    data_dir,
    "--vocabulary",
    vocab_path,
    "--out",
    str(out),
  )
  (row,) = json.loads(out.read_text())["rows"]
  for task in ("score", "generate"):
    for method in ("old", "new"):
      assert row[task][method]["prompts_per_s"] > 0
      assert 0 < row[task][method]["real_encoder_fraction"] <= 1
      assert row[task][method]["compiled_shapes"] >= 1
    assert row[task]["new"]["real_encoder_fraction"] >= row[task]["old"]["real_encoder_fraction"]
  score = row["score"]
  # Options packed into one decoder row: fewer padded decoder slots than one row per option.
  assert score["new"]["real_decoder_fraction"] > score["old"]["real_decoder_fraction"]
  assert score["max_abs_score_difference"] < 1e-3
  assert row["generate"]["identical_predictions"] == row["prompts"] == 24
  assert "new / old" in stdout
