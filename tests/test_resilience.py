"""Never lose a run: SIGKILL at any step (even mid-save) and resume ends bit-identical.

One uninterrupted `flan.train` run of the tiny T5 (dropout on, a real FLAN task on mock
data, a checkpoint every 5 steps) is the reference. A second run in another MODEL_DIR is
killed with SIGKILL three times, at steps read from its own progress lines, the third time
while orbax is writing checkpoint_35, and restarted after each kill with the same command.
Its final parameters must equal the reference's bit for bit: same data order, same dropout,
whatever the number of restarts.
"""

import hashlib
import os
import pathlib
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS = 40

# `python -m flan.train`, plus an optional hold: the named checkpoint's `dataset` item is
# never committed (its writer blocks), so the process can be killed in the middle of a save.
_DRIVER = """
import sys, time
hold = sys.argv[1]
if hold != "none":
  import orbax.checkpoint as ocp
  original = ocp.JsonCheckpointHandler._save_fn
  async def held(self, x, directory):
    if f"checkpoint_{hold}." in str(directory):
      print(f"HOLDING SAVE {directory}", flush=True)
      time.sleep(600)
    return await original(self, x, directory)
  ocp.JsonCheckpointHandler._save_fn = held
from flan import train
sys.exit(train.main(sys.argv[2:]))
"""

_STEP_LINE = re.compile(rf"step (\d+)/{STEPS} ")


def _flags(model_dir):
  return [
    "--gin_file=configs/smoke.gin",
    f"--gin.MODEL_DIR={model_dir}",
    "--gin.MIXTURE_OR_TASK_NAME='flan_rte_train'",
    "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 16}",
    f"--gin.TRAIN_STEPS={STEPS}",
    "--gin.CHECKPOINT_PERIOD=5",
    "--gin.KEEP_CHECKPOINTS=None",
    "--gin.LOG_EVERY=1",
    "--gin.DROPOUT_RATE=0.1",
    "--gin.RANDOM_SEED=7",
  ]


class _Run:
  """A training subprocess whose merged output is read line by line with timeouts."""

  def __init__(self, model_dir, hold="none"):
    env = dict(
      os.environ,
      PYTHONPATH=str(ROOT),
      JAX_PLATFORMS="cpu",
      XLA_FLAGS="--xla_force_host_platform_device_count=2",
      TF_CPP_MIN_LOG_LEVEL="3",
    )
    self.proc = subprocess.Popen(
      [sys.executable, "-c", _DRIVER, hold, *_flags(model_dir)],
      cwd=ROOT,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    self.lines: list[str] = []
    self._queue: queue.Queue = queue.Queue()
    threading.Thread(target=self._read, daemon=True).start()

  def _read(self):
    for line in self.proc.stdout:
      self._queue.put(line)
    self._queue.put(None)

  def wait_for(self, predicate, timeout=180.0) -> str:
    """The first output line satisfying `predicate` (fails on exit or timeout first)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
      try:
        line = self._queue.get(timeout=1.0)
      except queue.Empty:
        continue
      if line is None:
        raise AssertionError("run exited first:\n" + "".join(self.lines[-30:]))
      self.lines.append(line)
      if predicate(line):
        return line
    raise AssertionError("timed out:\n" + "".join(self.lines[-30:]))

  def kill_after_step(self, step: int) -> int:
    """SIGKILLs once the run reports `step`; returns the step it reported."""
    line = self.wait_for(
      lambda l: bool(_STEP_LINE.search(l)) and int(_STEP_LINE.search(l).group(1)) >= step
    )
    self.proc.send_signal(signal.SIGKILL)
    self.proc.wait(timeout=60)
    return int(_STEP_LINE.search(line).group(1))

  def finish(self, timeout=180.0) -> int:
    try:
      self.wait_for(lambda l: False, timeout=timeout)
    except AssertionError:
      pass
    self.proc.wait(timeout=30)
    return self.proc.returncode

  def source(self) -> str:
    """Where the run's train state came from (its own log line)."""
    line = self.wait_for(lambda l: "Train state " in l)
    return line.split("Train state ", 1)[1]

  def close(self):
    if self.proc.poll() is None:
      self.proc.kill()
      self.proc.wait(timeout=30)


def _checksum(model_dir: pathlib.Path, step: int) -> tuple[str, dict]:
  path = (model_dir / f"checkpoint_{step}" / "state").absolute()
  state = ocp.StandardCheckpointer().restore(path)
  leaves = []

  def walk(tree, prefix=""):
    if isinstance(tree, dict):
      for k in sorted(tree):
        walk(tree[k], f"{prefix}/{k}")
    else:
      leaves.append((prefix, np.asarray(tree)))

  walk(state["params"])
  digest = hashlib.sha256()
  for name, x in leaves:
    digest.update(name.encode() + x.tobytes())
  return digest.hexdigest(), dict(leaves)


@pytest.mark.slow
def test_sigkill_at_three_steps_one_mid_save_then_resume_equals_an_uninterrupted_run(tmp_path):
  runs = []
  try:
    whole = _Run(tmp_path / "whole")
    runs.append(whole)
    assert "scratch" in whole.source()
    assert whole.finish() == 0, "".join(whole.lines[-30:])

    killed = tmp_path / "killed"
    # 1. A kill between two checkpoints: back to the last one before it.
    first = _Run(killed)
    runs.append(first)
    reached_1 = first.kill_after_step(12)
    assert reached_1 < STEPS
    # 2. Resumed, then killed again later.
    second = _Run(killed)
    runs.append(second)
    source_2 = second.source()
    assert "resumed from" in source_2 and "checkpoint_" in source_2, source_2
    reached_2 = second.kill_after_step(23)
    assert reached_2 < STEPS
    # 3. Resumed, then killed while checkpoint_35 is being written.
    third = _Run(killed, hold="35")
    runs.append(third)
    source_3 = third.source()
    assert "resumed from" in source_3, source_3
    line = third.wait_for(lambda l: l.startswith("HOLDING SAVE"))
    partial = list(killed.glob("checkpoint_35.orbax-checkpoint-tmp*"))
    assert partial and not (killed / "checkpoint_35").exists(), (line, partial)
    third.proc.send_signal(signal.SIGKILL)
    third.proc.wait(timeout=60)
    # 4. The half-written checkpoint_35 is not taken as complete: resume from 30.
    last = _Run(killed)
    runs.append(last)
    source_4 = last.source()
    assert source_4.split()[2].endswith("checkpoint_30"), source_4
    assert last.finish() == 0, "".join(last.lines[-30:])
  finally:
    for run in runs:
      run.close()

  expected, expected_leaves = _checksum(tmp_path / "whole", STEPS)
  got, got_leaves = _checksum(killed, STEPS)
  for name, x in expected_leaves.items():
    np.testing.assert_array_equal(got_leaves[name], x, err_msg=name)
  assert got == expected
  resumed = [pathlib.Path(s.split()[2]).name for s in (source_2, source_3, source_4)]
  print(
    f"killed after steps {reached_1}, {reached_2} and during the save of 35; resumed "
    f"from {resumed}; final checksum {got[:16]} == uninterrupted"
  )
