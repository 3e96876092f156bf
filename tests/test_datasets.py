"""The dataset table, split resolution (pure) and the data preparation status script."""

import importlib.util
import sys

import pytest
from conftest import ROOT

from flan.data import clusters
from flan.data import datasets as D


def _spec(*sources, name="toy"):
  return D.DatasetSpec(name, "nli", tuple(sources), ("accuracy",), True)


def test_table_has_62_uniquely_named_datasets_in_the_12_clusters():
  names = [d.name for d in D.DATASETS]
  assert len(names) == 62
  assert len(set(names)) == 62
  assert {d.cluster for d in D.DATASETS} == set(clusters.CLUSTERS)


def test_every_source_names_a_versioned_builder_and_its_splits():
  for d in D.DATASETS:
    for s in d.sources:
      assert ":" in s.tfds_name, s
      assert s.eval_splits, s
      assert s.tail >= 0


def test_get_unknown_name_lists_close_matches():
  with pytest.raises(KeyError, match="Did you mean: rte"):
    D.get("rtee")


def test_small_split_keeps_at_most_a_tenth_as_tail():
  # super_glue/rte in ../shared: 129 train examples, FLAN's train[:-200].
  spec = _spec(D.Source("rte:1", tail=200))
  r = D.resolve_splits(spec, {"rte:1": {"train": 129, "validation": 64}})
  assert r.train == (D.ReadSpec("rte:1", "train", 0, 117),)
  assert r.dev == (D.ReadSpec("rte:1", "train", 117, 129),)
  assert r.eval == (D.ReadSpec("rte:1", "validation", 0, 64),)
  assert r.train[0].tfds_split == "train[0:117]"


def test_large_split_keeps_the_full_tail_and_caps_training_at_30k():
  spec = _spec(D.Source("big:1", tail=200))
  r = D.resolve_splits(spec, {"big:1": {"train": 100_000, "validation": 5}})
  assert r.train == (D.ReadSpec("big:1", "train", 0, 30_000),)
  assert r.dev == (D.ReadSpec("big:1", "train", 99_800, 100_000),)


def test_train_tail_evaluation_reads_the_tail_and_no_dev():
  spec = _spec(D.Source("pc:1", eval_splits=(D.TRAIN_TAIL,), tail=1000))
  r = D.resolve_splits(spec, {"pc:1": {"train": 50_000}})
  assert r.eval == (D.ReadSpec("pc:1", "train", 49_000, 50_000),)
  assert r.dev == ()
  assert r.num_train_examples == 30_000


def test_cap_is_shared_by_sources_in_order():
  spec = _spec(D.Source("a:1"), D.Source("b:1"), D.Source("c:1"))
  sizes = {"a:1": {"train": 20_000, "validation": 1}, "b:1": {"train": 20_000, "validation": 1},
           "c:1": {"train": 5, "validation": 1}}
  r = D.resolve_splits(spec, sizes)
  assert [x.num_examples for x in r.train] == [20_000, 10_000]  # c gets nothing.
  assert r.num_train_examples == 30_000
  assert len(r.eval) == 3  # every source still evaluates.


def test_eval_only_source_and_empty_splits():
  spec = _spec(D.Source("t:1", train_split=None, eval_splits=("test",)))
  r = D.resolve_splits(spec, {"t:1": {"test": 7}})
  assert r.train == () and r.dev == ()
  assert r.eval == (D.ReadSpec("t:1", "test", 0, 7),)
  r = D.resolve_splits(_spec(D.Source("e:1", tail=10)), {"e:1": {"train": 0, "validation": 0}})
  assert r.train == () and r.dev == () and r.num_train_examples == 0


def test_custom_cap():
  spec = _spec(D.Source("a:1"))
  r = D.resolve_splits(spec, {"a:1": {"train": 500, "validation": 1}}, max_train_examples=100)
  assert r.num_train_examples == 100


# ----------------------------------------------------------------------------- prepare_data


def _prepare_script():
  spec = importlib.util.spec_from_file_location("prepare_data",
                                                ROOT / "scripts" / "prepare_data.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up there.
  spec.loader.exec_module(module)
  return module


@pytest.mark.realdata
def test_prepare_status_finds_the_shared_builders(data_dir):
  script = _prepare_script()
  rows = {r.tfds_name: r for r in script.statuses(D.DATASETS, data_dir)}
  assert len(rows) == sum(len(d.sources) for d in D.DATASETS)
  assert rows["super_glue/rte:1.0.2"].state == script.PREPARED
  assert "train 129" in rows["super_glue/rte:1.0.2"].detail
  assert rows["sentiment140:1.0.0"].state == script.MISSING
  assert rows["xsum:1.1.0"].state == script.MANUAL
  assert "downloads/manual" in rows["xsum:1.1.0"].detail
  assert rows["samsum:1.0.0"].state == script.PREPARED  # manual builder, but prepared.
  prepared = sum(r.state == script.PREPARED for r in rows.values())
  assert prepared == 42
  table = script.table(list(rows.values()))
  assert "42 prepared" in table


def test_prepare_check_on_an_empty_dir_reports_everything_missing(tmp_path, capsys):
  script = _prepare_script()
  code = script.main(["--check", "--datasets", "rte,xsum", "--data_dir", str(tmp_path)])
  out = capsys.readouterr().out
  assert code == 1
  assert "super_glue/rte:1.0.2" in out and "missing" in out
  assert "needs manual download" in out


def test_prepare_rejects_unknown_dataset_names(capsys):
  script = _prepare_script()
  assert script.main(["--check", "--datasets", "rtee"]) == 2
  assert "Did you mean: rte" in capsys.readouterr().err
