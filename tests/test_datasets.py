"""The dataset table, split resolution (pure) and the data preparation status script."""

import importlib.util
import sys

import pytest
from conftest import ROOT

from flan.data import clusters
from flan.data import datasets as D
from flan.data import splits as splits_lib


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
  r = splits_lib.resolve_splits(spec, {"rte:1": {"train": 129, "validation": 64}})
  assert r.train == (splits_lib.ReadSpec("rte:1", "train", 0, 117),)
  assert r.dev == (splits_lib.ReadSpec("rte:1", "train", 117, 129),)
  assert r.eval == (splits_lib.ReadSpec("rte:1", "validation", 0, 64),)
  assert r.train[0].tfds_split == "train[0:117]"


def test_large_split_keeps_the_full_tail_and_caps_training_at_30k():
  spec = _spec(D.Source("big:1", tail=200))
  r = splits_lib.resolve_splits(spec, {"big:1": {"train": 100_000, "validation": 5}})
  assert r.train == (splits_lib.ReadSpec("big:1", "train", 0, 30_000),)
  assert r.dev == (splits_lib.ReadSpec("big:1", "train", 99_800, 100_000),)


def test_train_tail_evaluation_reads_the_tail_and_no_dev_without_dev_in_tail():
  spec = _spec(D.Source("pc:1", eval_splits=(D.TRAIN_TAIL,), tail=1000))
  r = splits_lib.resolve_splits(spec, {"pc:1": {"train": 50_000}})
  assert r.eval == (splits_lib.ReadSpec("pc:1", "train", 49_000, 50_000),)
  assert r.dev == ()
  assert r.num_train_examples == 30_000


def test_every_source_is_capped_separately_and_tagged_with_its_name():
  spec = _spec(D.Source("a:1", name="a"), D.Source("b:1", name="b"), D.Source("c:1", name="c"))
  sizes = {
    "a:1": {"train": 20_000, "validation": 1},
    "b:1": {"train": 50_000, "validation": 1},
    "c:1": {"train": 5, "validation": 1},
  }
  r = splits_lib.resolve_splits(spec, sizes)
  assert r.train == (
    splits_lib.ReadSpec("a:1", "train", 0, 20_000, "a"),
    splits_lib.ReadSpec("b:1", "train", 0, 30_000, "b"),
    splits_lib.ReadSpec("c:1", "train", 0, 5, "c"),
  )
  assert [r.num_train_examples_of(x) for x in "abc"] == [20_000, 30_000, 5]
  assert [x.source for x in r.eval] == ["a", "b", "c"]  # every source still evaluates.


def test_flan_tail_is_kept_whenever_the_split_holds_twice_it():
  assert splits_lib.held_out_tail(50, 250) == 50  # super_glue/cb: FLAN's train[:-50] leaves 200
  assert splits_lib.held_out_tail(200, 400) == 200
  assert splits_lib.held_out_tail(200, 399) == 39  # too small for FLAN's slice: 10% instead
  assert splits_lib.held_out_tail(200, 129) == 12
  assert splits_lib.held_out_tail(0, 10) == 0


def test_multi_source_datasets_name_each_source_once():
  for d in D.DATASETS:
    names = [s.name for s in d.sources]
    if len(names) > 1:
      assert all(names) and len(set(names)) == len(names), d.name
    else:
      assert names == [""], d.name


def test_full_flan_sizes_give_every_source_flans_own_train_slice():
  from flan_sizes import FLAN_TRAIN, FULL_SIZES, flan_slice_size

  checked = set()
  for spec in D.DATASETS:
    r = splits_lib.resolve_splits(spec, FULL_SIZES)
    for source in spec.sources:
      n = FULL_SIZES[source.tfds_name][source.train_split]
      want = flan_slice_size(FLAN_TRAIN[spec.name, source.name], n)
      assert r.num_train_examples_of(source.name) == want, (spec.name, source.name)
      checked.add((spec.name, source.name))
  assert checked == set(FLAN_TRAIN)  # all 67 training configs of the 62 datasets
  # The sources that a shared 30,000 budget starved: each trains on its own slice now.
  anli = splits_lib.resolve_splits(D.get("anli"), FULL_SIZES)
  assert [anli.num_train_examples_of(s) for s in ("r1", "r2", "r3")] == [16_946, 30_000, 30_000]
  squad = splits_lib.resolve_splits(D.get("squad"), FULL_SIZES)
  assert [squad.num_train_examples_of(s) for s in ("v1", "v2")] == [30_000, 30_000]
  mnli = splits_lib.resolve_splits(D.get("mnli"), FULL_SIZES)
  assert mnli.train == (
    splits_lib.ReadSpec("glue/mnli:2.0.0", "train", 0, 30_000, "matched"),
    splits_lib.ReadSpec("glue/mnli:2.0.0", "train", 0, 30_000, "mismatched"),
  )
  cb = splits_lib.resolve_splits(D.get("cb"), FULL_SIZES)
  assert cb.train[0].stop == 200 and cb.dev[0].tfds_split == "train[200:250]"


def test_every_source_has_flans_validation_split_as_its_dev_split():
  from flan_sizes import FLAN_DEV, FLAN_TRAIN, FULL_SIZES, flan_slice

  for spec in D.DATASETS:
    r = splits_lib.resolve_splits(spec, FULL_SIZES)
    for source in spec.sources:
      flan_split = FLAN_DEV[spec.name, source.name]
      n = FULL_SIZES[source.tfds_name][flan_split.split("[")[0]]
      want = splits_lib.ReadSpec(source.tfds_name, *flan_slice(flan_split, n))
      got = [(x.tfds_name, x.split, x.start, x.stop) for x in r.dev if x.source == source.name]
      if spec.name == "mnli" and source.name == "mismatched":
        assert got == []  # the matched source's train[-200:], read once
        continue
      assert got == [(want.tfds_name, want.split, want.start, want.stop)], (spec.name, got)
      small = FLAN_TRAIN[spec.name, source.name].startswith("train[:-")  # train[:-50] etc.
      assert want.num_examples == 200 or small or spec.name.startswith("opinion"), spec.name
  mnli = splits_lib.resolve_splits(D.get("mnli"), FULL_SIZES)
  assert mnli.dev == (splits_lib.ReadSpec("glue/mnli:2.0.0", "train", 392_502, 392_702, "matched"),)


def test_a_dev_split_from_another_split_or_inside_an_eval_tail_is_clamped_to_the_data():
  anli = _spec(D.Source("a:1", eval_splits=("test",), dev="validation[:200]"))
  r = splits_lib.resolve_splits(anli, {"a:1": {"train": 467, "test": 116, "validation": 117}})
  assert r.dev == (splits_lib.ReadSpec("a:1", "validation", 0, 117),)  # all 117 of the sample
  assert r.num_train_examples == 467  # nothing held back from train
  aeslc = _spec(D.Source("b:1", eval_splits=("test",), dev="validation[-200:]"))
  r = splits_lib.resolve_splits(aeslc, {"b:1": {"train": 9, "test": 3, "validation": 1960}})
  assert r.dev == (splits_lib.ReadSpec("b:1", "validation", 1760, 1960),)
  pc = _spec(D.Source("p:1", eval_splits=(D.TRAIN_TAIL,), tail=1200, dev_in_tail=200))
  r = splits_lib.resolve_splits(pc, {"p:1": {"train": 1000}})  # a sample: a 10% tail, split 1:5
  assert r.dev == (splits_lib.ReadSpec("p:1", "train", 900, 917),)
  assert r.eval == (splits_lib.ReadSpec("p:1", "train", 917, 1000),)
  assert r.num_train_examples == 900
  with pytest.raises(ValueError, match="split\\[:N\\]"):
    _ = D.Source("x:1", dev="validation[10:20]").dev_slice


def test_eval_only_source_and_empty_splits():
  spec = _spec(D.Source("t:1", train_split=None, eval_splits=("test",)))
  r = splits_lib.resolve_splits(spec, {"t:1": {"test": 7}})
  assert r.train == () and r.dev == ()
  assert r.eval == (splits_lib.ReadSpec("t:1", "test", 0, 7),)
  r = splits_lib.resolve_splits(
    _spec(D.Source("e:1", tail=10)), {"e:1": {"train": 0, "validation": 0}}
  )
  assert r.train == () and r.dev == () and r.num_train_examples == 0


def test_custom_cap():
  spec = _spec(D.Source("a:1"))
  r = splits_lib.resolve_splits(
    spec, {"a:1": {"train": 500, "validation": 1}}, max_train_examples=100
  )
  assert r.num_train_examples == 100


# ----------------------------------------------------------------------------- prepare_data


def _prepare_script():
  spec = importlib.util.spec_from_file_location(
    "prepare_data", ROOT / "scripts" / "prepare_data.py"
  )
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up there.
  spec.loader.exec_module(module)
  return module


@pytest.mark.realdata
def test_prepare_status_finds_the_shared_builders(data_dir):
  script = _prepare_script()
  rows = {r.tfds_name: r for r in script.statuses(D.DATASETS, data_dir)}
  assert len(rows) == sum(len(d.tfds_names) for d in D.DATASETS)
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
