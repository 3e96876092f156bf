"""The token cache: written once, memory-mapped later, the same batches bit for bit, and a
new entry whenever anything the tokens depend on changes."""

import numpy as np
import pytest

from flan.data import examples, input_pipeline, mixture_stream, token_cache

seqio = pytest.importorskip("seqio")
tasks = pytest.importorskip("flan.data.tasks")

MIXTURE = "tc_test_mixture"
LENGTHS = {"inputs": 128, "targets": 16}


@pytest.fixture(scope="module")
def registered(data_dir, vocab_path):
  previous = tasks.current_config()
  tasks.register(data_dir=data_dir, vocabulary=vocab_path)
  seqio.MixtureRegistry.remove(MIXTURE)
  seqio.MixtureRegistry.add(
    MIXTURE, [(tasks.train_task("rte"), 2.0), (tasks.train_task("anli", "r1"), 1.0)]
  )
  yield data_dir
  seqio.MixtureRegistry.remove(MIXTURE)
  tasks.register(
    **{
      k: getattr(previous, k)
      for k in (
        "data_dir",
        "vocabulary",
        "num_templates",
        "template_mode",
        "mixing_cap",
        "temperature",
        "train_clusters",
      )
    }
  )


def _batches(n=4, name=MIXTURE, **kw):
  mixture_stream._LIVE.clear()  # nothing shared with an earlier stream: a real read or hit.
  with input_pipeline.make_train_iterator(name, LENGTHS, 8, 3, window_size=64, **kw) as it:
    out = [next(it) for _ in range(n)]
    tokens = list(it._stream._tokens)  # pylint: disable=protected-access
  return out, tokens


def _same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.mark.realdata
def test_cache_hit_equals_cache_miss_equals_no_cache_bit_for_bit(registered, tmp_path):
  plain, _ = _batches(shard_index=0, num_shards=1)
  miss, _ = _batches(shard_index=0, num_shards=1, cache_dir=str(tmp_path))
  entries = sorted(p.name for p in tmp_path.iterdir())
  assert len(entries) == 2 and all(
    (tmp_path / e / "shard-0-of-1" / "done").exists() for e in entries
  )
  hit, tokens = _batches(shard_index=0, num_shards=1, cache_dir=str(tmp_path))
  assert all(isinstance(t.inputs.values, np.memmap) for t in tokens)  # mapped, not read
  _same(miss, plain)
  _same(hit, plain)


@pytest.mark.realdata
def test_a_shard_maps_its_rows_out_of_a_whole_task_entry(registered, tmp_path):
  _batches(1, shard_index=0, num_shards=1, cache_dir=str(tmp_path))  # the whole task
  for shard in (0, 1):
    own, _ = _batches(shard_index=shard, num_shards=2)
    mapped, tokens = _batches(shard_index=shard, num_shards=2, cache_dir=str(tmp_path))
    assert all(isinstance(t.inputs.values, np.memmap) for t in tokens)
    _same(mapped, own)
  assert not list(tmp_path.glob("*/shard-*-of-2"))  # nothing new written


def _key(**overrides):
  task = tasks.get(tasks.train_task("rte"))
  return {"task": task.name, **task.source.cache_key("train", 3), **overrides}


@pytest.mark.realdata
def test_a_changed_template_or_vocabulary_or_seed_is_another_entry(
  registered, vocab_path, tmp_path, monkeypatch
):
  data_dir = registered
  base = _key()
  shard = (0, 1)
  tokens = token_cache.Tokens(*_tiny_tokens())
  token_cache.write(tmp_path, base["task"], base, shard, tokens)
  assert token_cache.load(tmp_path, base["task"], base, shard, None) is not None

  task = tasks.get(tasks.train_task("rte"))
  assert task.source.cache_key("train", 4) != base  # the seed draws the templates
  templates = examples.get_templates("rte")
  monkeypatch.setattr(
    examples, "get_templates", lambda d: templates[::-1] if d == "rte" else templates
  )
  changed_templates = _key()
  monkeypatch.undo()
  tasks.register(data_dir=data_dir, vocabulary=None)  # bytes instead of T5's model
  try:
    changed_vocabulary = _key()
  finally:
    tasks.register(data_dir=data_dir, vocabulary=vocab_path)
    seqio.MixtureRegistry.remove(MIXTURE)
    seqio.MixtureRegistry.add(
      MIXTURE, [(tasks.train_task("rte"), 2.0), (tasks.train_task("anli", "r1"), 1.0)]
    )
  assert _key() == base  # the same knobs give the same key
  for other in (changed_templates, changed_vocabulary):
    assert other != base
    assert token_cache.entry_dir(tmp_path, base["task"], other) != token_cache.entry_dir(
      tmp_path, base["task"], base
    )
    assert token_cache.load(tmp_path, base["task"], other, shard, None) is None  # a miss


def _tiny_tokens():
  from flan.data import packing

  r = packing.Ragged(np.arange(6, dtype=np.int32), np.array([2, 4]))
  return r, r, np.array([0, 1], np.int32)


def test_writes_are_atomic_and_a_mismatched_manifest_is_never_read(tmp_path):
  parts = {"task": "t", "x": 1}
  r, _, ids = _tiny_tokens()
  final = token_cache.write(tmp_path, "t", parts, (1, 2), token_cache.Tokens(r, r, ids))
  assert sorted(p.name for p in final.parent.iterdir()) == ["manifest.json", "shard-1-of-2"]
  got = token_cache.load(tmp_path, "t", parts, (1, 2), (0, 2))
  np.testing.assert_array_equal(got.inputs.values, r.values)
  np.testing.assert_array_equal(got.example_id, ids)
  assert token_cache.load(tmp_path, "t", parts, (0, 2), (0, 2)) is None  # not written
  (final.parent / "manifest.json").write_text('{"format": 1, "task": "t", "x": 2}')
  assert token_cache.load(tmp_path, "t", parts, (1, 2), (0, 2)) is None


@pytest.mark.realdata
def test_prepare_data_cache_builds_the_entries_a_run_maps(
  registered, vocab_path, tmp_path, capsys, monkeypatch
):
  import importlib.util
  import pathlib

  path = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "prepare_data.py"
  spec = importlib.util.spec_from_file_location("prepare_data", path)
  prepare_data = importlib.util.module_from_spec(spec)
  monkeypatch.setitem(__import__("sys").modules, "prepare_data", prepare_data)
  spec.loader.exec_module(prepare_data)
  name = tasks.train_task("rte")
  assert (
    prepare_data.main(
      [
        "--cache",
        str(tmp_path),
        "--mixture",
        name,
        "--data_dir",
        registered,
        "--vocabulary",
        vocab_path,
        "--seed",
        "3",
      ]
    )
    == 0
  )
  assert "1 tasks cached" in capsys.readouterr().out
  before = sorted(p.name for p in tmp_path.iterdir())
  _, tokens = _batches(1, name, shard_index=1, num_shards=2, cache_dir=str(tmp_path))
  assert all(isinstance(t.inputs.values, np.memmap) for t in tokens)
  assert sorted(p.name for p in tmp_path.iterdir()) == before
