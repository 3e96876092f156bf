"""Any seqio task or mixture trains: a user's module, imported through MIXTURE_OR_TASK_MODULE
(t5x's macro), registers a `seqio.TfdsDataSource` task over the ../shared TFDS samples and a
mixture of it with a FLAN task; `python -m flan.train` trains on it through the same packer
and resumes exactly.
"""

import os
import pathlib
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

USER_MODULE = '''
"""A user's seqio tasks, as a t5x user writes them (not FLAN's)."""
import functools

import seqio
import tensorflow as tf

from flan.data import vocabularies

DATA_DIR = {data_dir!r}
VOCABULARY = vocabularies.get_vocabulary(None)  # the run's VOCABULARY (bytes here)
FEATURES = {{"inputs": seqio.Feature(VOCABULARY, add_eos=True),
            "targets": seqio.Feature(VOCABULARY, add_eos=True)}}


def question_to_type(ds):
  return ds.map(lambda ex: {{"inputs": tf.strings.join(["question type: ", ex["text"]]),
                            "targets": tf.as_string(ex["label-coarse"])}})


seqio.TaskRegistry.add(
    "user_trec_qtype",
    source=seqio.TfdsDataSource("trec:1.0.0", tfds_data_dir=DATA_DIR),
    preprocessors=[question_to_type, seqio.preprocessors.tokenize,
                   seqio.preprocessors.append_eos_after_trim],
    output_features=FEATURES, metric_fns=[])
seqio.MixtureRegistry.add("user_trec_mix", [("user_trec_qtype", 1.0), ("flan_trec_train", 1.0)])
'''


@pytest.fixture
def user_module(tmp_path, data_dir, monkeypatch):
  """The module file in a directory of its own, importable as `user_seqio_tasks`."""
  directory = tmp_path / "user_code"
  directory.mkdir()
  (directory / "user_seqio_tasks.py").write_text(USER_MODULE.format(data_dir=data_dir))
  monkeypatch.syspath_prepend(str(directory))
  yield directory
  sys.modules.pop("user_seqio_tasks", None)
  import seqio

  seqio.MixtureRegistry.remove("user_trec_mix")
  seqio.TaskRegistry.remove("user_trec_qtype")


def test_a_user_mixture_of_a_tfds_task_and_a_flan_task_streams_through_the_packer(
  user_module, data_dir
):
  from flan import train as train_lib
  from flan.data import tasks
  from flan.model import partitioning
  from flan.training.options import DataOptions

  data = DataOptions(
    mixture_or_task_name="user_trec_mix",
    data_dir=data_dir,
    task_feature_lengths={"inputs": 64, "targets": 16},
    mixture_or_task_module="user_seqio_tasks",
  )
  assert data.mixture_or_task_module == ("user_seqio_tasks",)
  try:
    it = train_lib._make_iterator(
      "user_trec_mix",
      data.task_feature_lengths,
      8,
      0,
      pack=True,
      data=data,
      vocabulary=None,
      mesh=partitioning.make_mesh({"data": -1, "model": 1}),
    )
  finally:
    tasks.register()  # back to the defaults for the other tests
  with it:
    assert sorted(it.task_names) == ["flan_trec_train", "user_trec_qtype"]
    assert it.task_probabilities == {"flan_trec_train": 0.5, "user_trec_qtype": 0.5}
    batch = next(it)
    assert batch["encoder_input_tokens"].shape == (8, 64)
    assert (batch["decoder_target_tokens"] > 0).any()


def test_an_unknown_name_and_a_missing_module_are_one_clear_error(user_module):
  from flan import train as train_lib
  from flan.data import tasks
  from flan.errors import UserError

  with pytest.raises(UserError, match="MIXTURE_OR_TASK_MODULE 'no_such_tasks' cannot be imported"):
    train_lib._import_task_modules(("no_such_tasks",))
  with pytest.raises(UserError, match="Unknown seqio task or mixture 'user_trec_mx'.*user_trec"):
    train_lib._import_task_modules(("user_seqio_tasks",))
    tasks.get("user_trec_mx")


def _train(model_dir, steps, user_code, data_dir):
  env = dict(
    os.environ,
    PYTHONPATH=f"{ROOT}{os.pathsep}{user_code}",
    JAX_PLATFORMS="cpu",
    TF_CPP_MIN_LOG_LEVEL="3",
  )
  flags = [
    "--gin_file=configs/smoke.gin",
    f"--gin.MODEL_DIR='{model_dir}'",
    f"--gin.DATA_DIR='{data_dir}'",
    "--gin.MIXTURE_OR_TASK_MODULE='user_seqio_tasks'",
    "--gin.MIXTURE_OR_TASK_NAME='user_trec_mix'",
    "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 16}",
    f"--gin.TRAIN_STEPS={steps}",
    "--gin.CHECKPOINT_PERIOD=2",
    "--gin.KEEP_CHECKPOINTS=None",
    "--gin.LOG_EVERY=1",
    "--gin.DROPOUT_RATE=0.1",
    "--gin.RANDOM_SEED=5",
  ]
  out = subprocess.run(
    [sys.executable, "-m", "flan.train", *flags],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  return out.stdout + out.stderr


def _params(step_dir):
  return ocp.StandardCheckpointer().restore(step_dir / "state")["params"]


@pytest.mark.slow
def test_python_m_flan_train_on_a_user_mixture_resumes_exactly(tmp_path, user_module, data_dir):
  _train(tmp_path / "whole", 4, user_module, data_dir)
  _train(tmp_path / "split", 2, user_module, data_dir)
  log = _train(tmp_path / "split", 4, user_module, data_dir)
  assert "resumed from" in log and "checkpoint_2" in log
  whole, split = (_params(tmp_path / d / "checkpoint_4") for d in ("whole", "split"))
  import jax

  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(whole), jax.tree.leaves(split)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(path))
