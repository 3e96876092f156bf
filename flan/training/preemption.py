"""SIGTERM and Ctrl-C: finish the current step, save, and exit 0 within a grace period.

Cluster schedulers (Kubernetes, Slurm, Cloud TPU maintenance) send SIGTERM and kill the
process some seconds later. The handler only sets a flag; what happens next depends on the
run's phase (`phase`), so that every message tells the truth:

  "setup"      (data loading, restore): the trainer checks the flag before the first step
               and exits 0; nothing was trained since the last checkpoint.
  "train"      the loop checks it after each step, saves that step, and exits 0.
  "evaluation" the last checkpoint is already committed: `EvaluationInterrupted` is raised
               in the main thread to stop the final evaluation, and the run exits 0.

SIGINT (Ctrl-C) is handled the same way; a second Ctrl-C aborts at once (exit 130) without
saving. A watchdog ends the process if it outlives the grace period after the signal, so a
stuck save cannot block the scheduler: exit 1 while training (that step's save did not
finish; the previous checkpoint is intact), exit 0 in the other phases (nothing is lost).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

import jax
import numpy as np

SETUP, TRAIN, EVALUATION, FINISHING = "setup", "train", "evaluation", "finishing"
ABORT_EXIT_CODE = 130  # a second Ctrl-C: the shell's code for death by SIGINT


class EvaluationInterrupted(Exception):
  """Raised in the main thread by a signal during the final evaluation."""


class PreemptionHandler:
  """Turns SIGTERM / SIGINT into a flag the training loop polls (`requested`).

  Args:
    grace_seconds: after the signal, the process is ended if it has not exited by itself
      within this many seconds (exit 1 while training, 0 otherwise).
    signals: the signals to catch.
    on_abort: called before the process is ended by the watchdog or a second Ctrl-C
      (releases the MODEL_DIR lock).
  """

  def __init__(
    self,
    grace_seconds: float = 120.0,
    signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
    on_abort: Callable[[], None] | None = None,
  ):
    self.grace_seconds = grace_seconds
    self._event = threading.Event()
    self._previous = {}
    self._signals = signals
    self._on_abort = on_abort or (lambda: None)
    self.phase = SETUP
    self.saved: str | None = None  # the checkpoint known to be committed, for messages
    self._timer: threading.Timer | None = None

  def __enter__(self) -> PreemptionHandler:
    if threading.current_thread() is threading.main_thread():
      for sig in self._signals:
        self._previous[sig] = signal.signal(sig, self._on_signal)
    return self

  def __exit__(self, *exc) -> None:
    if self._timer is not None:  # the run exited within the grace period
      self._timer.cancel()
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()

  def _on_signal(self, signum: int, frame: FrameType | None) -> None:
    del frame
    name = signal.Signals(signum).name
    if self._event.is_set():
      if signum == signal.SIGINT:
        logging.error("Second %s: aborting now, without saving.", name)
        self._on_abort()
        os._exit(ABORT_EXIT_CODE)
      return
    self._event.set()
    self._timer = threading.Timer(self.grace_seconds, self._give_up)
    self._timer.daemon = True
    self._timer.start()
    if self.phase == SETUP:
      logging.warning(
        "Received %s before training started: exiting once the current setup "
        "call returns; nothing was trained since the last checkpoint.",
        name,
      )
    elif self.phase == TRAIN:
      logging.warning(
        "Received %s: saving a checkpoint at the current step and exiting (grace period %.0f s).",
        name,
        self.grace_seconds,
      )
    elif self.phase == FINISHING:
      logging.warning("Received %s: the run has finished; exiting.", name)
    else:
      logging.warning(
        "Received %s during the final evaluation: %s is saved; stopping the "
        "evaluation (rerun the same command, or flan.evaluate, to evaluate it).",
        name,
        self.saved or "the last checkpoint",
      )
      raise EvaluationInterrupted(name)

  def _give_up(self) -> None:
    if self.phase == TRAIN:
      logging.error(
        "The preemption save did not finish within %.0f s; exiting without it "
        "(the previous checkpoint is intact).",
        self.grace_seconds,
      )
      code = 1
    elif self.phase == EVALUATION:
      logging.error(
        "The final evaluation did not stop within %.0f s; exiting (%s is saved).",
        self.grace_seconds,
        self.saved or "the last checkpoint",
      )
      code = 0
    else:
      logging.error(
        "Setup did not return within %.0f s of the signal; exiting (nothing was "
        "trained since the last checkpoint).",
        self.grace_seconds,
      )
      code = 0
    self._on_abort()
    os._exit(code)

  def requested(self) -> bool:
    """Whether any host was signalled (all hosts agree, so they save the same step)."""
    flag = self._event.is_set()
    if jax.process_count() == 1:
      return flag
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))
