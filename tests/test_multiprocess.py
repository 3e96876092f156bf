"""Multi-process training on loopback equals single-process training.

Two processes (`jax.distributed` on 127.0.0.1, CPU collectives, 2 devices each) each read
their own data shard of a real FLAN task (mock TFDS data) through the FLAN input pipeline,
and are stopped and resumed halfway (each process restores its own input position). One
process with 4 devices reads both shards side by side, which is the same global batch. The
per-step losses must agree within 1e-5 (relative, float32). This is the code path of a TPU
pod or a GPU cluster: only the way processes find each other differs.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS, HALF = 8, 4

_DRIVER = """
import json, sys
import numpy as np
mode, model_dir, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
kw = {}
if mode == "multi":
  kw = dict(coordinator_address=sys.argv[4], num_processes=2, process_id=int(sys.argv[5]))

class BothShards:
  # One process reading shards 0 and 1 of 2 side by side: the 2-process global batch.
  def __init__(self, name, lengths, batch_size, seed, *, pack, data, vocabulary, mesh):
    from flan.data import input_pipeline
    from flan.data import tasks
    tasks.register(vocabulary=vocabulary, **data.registration())
    self.its = [input_pipeline.make_train_iterator(name, lengths, batch_size, seed, pack=pack,
                                                   shard_index=i, num_shards=2)
                for i in range(2)]
  def __next__(self):
    parts = [next(it) for it in self.its]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  def state(self):
    return {"shards": [it.state() for it in self.its]}
  def restore(self, state):
    for it, s in zip(self.its, state["shards"]):
      it.restore(s)
  @property
  def stats(self):
    return self.its[0].stats
  def batch_shapes(self):
    return self.its[0].batch_shapes()
  def close(self):
    for it in self.its:
      it.close()

from tiny_training import tiny_model, train
out = train(model=tiny_model(dropout_rate=0.1), mixture_or_task_name="flan_rte_train",
            task_feature_lengths={"inputs": 64, "targets": 16}, train_steps=steps,
            model_dir=model_dir, batch_size=8, random_seed=5, use_mock_data=True,
            checkpoint_period=HALF, log_every=1,
            make_iterator=BothShards if mode == "single" else None, **kw)
import jax
print("LOSSES", jax.process_index(), out["source"].split()[0],
      json.dumps([out["first_loss"]] + [h["loss"] for h in out["history"]]), flush=True)
""".replace("HALF", str(HALF))


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  return dict(
    os.environ,
    PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
    JAX_PLATFORMS="cpu",
    TF_CPP_MIN_LOG_LEVEL="3",
    XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
  )


def _losses(out: str) -> tuple[str, list[float]]:
  line = [l for l in out.splitlines() if l.startswith("LOSSES")][-1]
  _, _, source, values = line.split(" ", 3)
  return source, json.loads(values)


def _run_two_processes(model_dir, steps, timeout=240) -> list[tuple[str, list[float]]]:
  address = f"127.0.0.1:{_free_port()}"
  procs = [
    subprocess.Popen(
      [sys.executable, "-c", _DRIVER, "multi", str(model_dir), str(steps), address, str(i)],
      cwd=ROOT,
      env=_env(2),
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=timeout)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait(timeout=30)
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-4000:]
  return [_losses(out) for out in outs]


@pytest.mark.slow
def test_two_processes_with_two_devices_each_train_like_one_process_with_four(tmp_path):
  single = subprocess.run(
    [sys.executable, "-c", _DRIVER, "single", str(tmp_path / "one"), str(STEPS)],
    cwd=ROOT,
    env=_env(4),
    capture_output=True,
    text=True,
    timeout=240,
  )
  assert single.returncode == 0, (single.stdout + single.stderr)[-4000:]
  _, expected = _losses(single.stdout)
  assert len(expected) == STEPS

  first = _run_two_processes(tmp_path / "two", HALF)
  second = _run_two_processes(tmp_path / "two", STEPS)  # each process resumes its own shard
  saved = json.loads((tmp_path / "two" / f"checkpoint_{HALF}" / "dataset" / "metadata").read_text())
  assert sorted(saved) == ["process_0-of-2", "process_1-of-2"]
  assert [saved[k]["shard_index"] for k in sorted(saved)] == [0, 1]
  for (source_a, a), (source_b, b) in zip(first, second):
    assert source_a == "initialised" and source_b == "resumed"
    got = a + b
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=0)
  print(
    "max relative loss difference:",
    max(abs(g - e) / abs(e) for g, e in zip(first[0][1] + second[0][1], expected)),
  )


def test_each_process_position_is_saved_and_restored_as_its_own(tmp_path):
  """The `dataset` item keys each process's state; another process count is refused."""
  from flan.training import checkpoints

  state = {"window": 3, "row": 5}
  saved = checkpoints.gather_dataset_states(state)
  assert saved == {"process_0-of-1": state}
  assert checkpoints.own_dataset_state(saved, "ckpt") == state
  assert checkpoints.own_dataset_state(state, "ckpt") == state  # a bare state still loads
  two = {"process_0-of-2": state, "process_1-of-2": {"window": 2, "row": 9}}
  with pytest.raises(checkpoints.CheckpointError, match="2 process.*NUM_PROCESSES=2"):
    checkpoints.own_dataset_state(two, "ckpt")
