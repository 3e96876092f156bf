"""SIGTERM handling: finish the current step, save, and exit 0 within a grace period.

Cluster schedulers (Kubernetes, Slurm, Cloud TPU maintenance) send SIGTERM and kill the
process some seconds later. The handler only sets a flag; the host loop checks it after
each step, saves a checkpoint at the step reached and returns. A watchdog ends the process
if that save outlives the grace period, so a stuck save cannot block the scheduler.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

import jax
import numpy as np


class PreemptionHandler:
  """Turns SIGTERM into a flag the training loop polls (`requested`).

  Args:
    grace_seconds: after the signal, the process is ended (exit 1) if it has not exited by
      itself within this many seconds.
    signals: the signals to catch.
  """

  def __init__(self, grace_seconds: float = 120.0, signals: tuple[int, ...] = (signal.SIGTERM,)):
    self.grace_seconds = grace_seconds
    self._event = threading.Event()
    self._previous = {}
    self._signals = signals

  def __enter__(self) -> PreemptionHandler:
    if threading.current_thread() is threading.main_thread():
      for sig in self._signals:
        self._previous[sig] = signal.signal(sig, self._on_signal)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()

  def _on_signal(self, signum: int, frame: FrameType | None) -> None:
    del frame
    if self._event.is_set():
      return
    logging.warning(
      "Received signal %d: saving a checkpoint at the current step and exiting "
      "(grace period %.0f s).",
      signum,
      self.grace_seconds,
    )
    self._event.set()
    timer = threading.Timer(self.grace_seconds, self._give_up)
    timer.daemon = True
    timer.start()

  def _give_up(self) -> None:
    logging.error(
      "The preemption save did not finish within %.0f s; exiting without it.", self.grace_seconds
    )
    os._exit(1)

  def requested(self) -> bool:
    """Whether any host was signalled (all hosts agree, so they save the same step)."""
    flag = self._event.is_set()
    if jax.process_count() == 1:
      return flag
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))
