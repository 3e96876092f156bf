"""What the training loop reports: a live progress line, periodic stats and TensorBoard.

Step metrics stay on device and are summed there; the host reads them only when it
prints (every `live_seconds` for the progress line, every `log_every` steps for the full
report), so logging never stalls the device pipeline. Summaries are written by host 0
under MODEL_DIR/train with tf.summary.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_add = jax.jit(lambda a, b: jax.tree.map(jnp.add, a, b))


def _fmt_duration(seconds: float) -> str:
  seconds = int(max(0, seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def summarize(
  sums: Mapping[str, float],
  *,
  steps: int,
  seconds: float,
  flops_per_step: float | None,
  peak_flops: float | None,
) -> dict[str, float]:
  """Derived statistics from metric sums over `steps` steps taking `seconds`."""
  get = lambda k: float(sums.get(k, 0.0))
  tokens = get("num_encoder_tokens") + get("num_decoder_tokens")
  slots = get("encoder_slots") + get("decoder_slots")
  out = {
    "loss": get("loss") / max(steps, 1),
    "loss_per_target_token": (
      get("cross_ent_sum") if "cross_ent_sum" in sums else get("cross_ent_loss")
    )
    / max(get("num_tokens"), 1.0),
    "z_loss": get("z_loss") / max(steps, 1),
    "accuracy": get("accuracy") / max(get("num_tokens"), 1.0),
    "grad_norm": get("grad_norm") / max(steps, 1),
    "skipped_updates": get("skipped_updates"),
    "timing/steps_per_second": steps / seconds if seconds else 0.0,
    "timing/tokens_per_second": tokens / seconds if seconds else 0.0,
    "timing/target_tokens_per_second": get("num_loss_weights") / seconds if seconds else 0.0,
    "timing/seqs_per_second": get("num_sequences") / seconds if seconds else 0.0,
    "non_padding_fraction/overall": tokens / slots if slots else 0.0,
    "non_padding_fraction/encoder": (
      get("num_encoder_tokens") / get("encoder_slots") if get("encoder_slots") else 0.0
    ),
    "non_padding_fraction/decoder": (
      get("num_decoder_tokens") / get("decoder_slots") if get("decoder_slots") else 0.0
    ),
    "non_padding_fraction/loss_weights": (
      get("num_loss_weights") / get("decoder_slots") if get("decoder_slots") else 0.0
    ),
  }
  if flops_per_step and seconds:
    achieved = flops_per_step * steps / seconds / jax.device_count()
    out["model_tflops_per_second_per_device"] = achieved / 1e12
    if peak_flops:
      out["mfu"] = achieved / peak_flops
  return out


class Progress:
  """Accumulates step metrics on device; prints and writes summaries at the edges.

  Args:
    total_steps: the step the run ends at (for step/total and the ETA).
    start_step: the step the run (re)started from.
    log_every: steps between full reports and summary writes.
    model_dir: summaries go to MODEL_DIR/train (host 0 only); None disables them.
    flops_per_step: model FLOPs of a train step (`flan.training.flops.train_step_flops`).
    peak_flops: the device's peak FLOP/s (None: MFU is not reported).
    data_stats: returns the input pipeline's counters (truncated examples, ...).
    live_seconds: minimum seconds between two live progress lines.
  """

  def __init__(
    self,
    *,
    total_steps: int,
    start_step: int,
    log_every: int,
    model_dir: str | None,
    flops_per_step: float | None = None,
    peak_flops: float | None = None,
    data_stats: Callable[[], Mapping[str, Any]] | None = None,
    live_seconds: float = 5.0,
  ):
    self.total_steps, self.log_every = total_steps, max(1, log_every)
    self.flops_per_step, self.peak_flops = flops_per_step, peak_flops
    self.data_stats = data_stats or (lambda: {})
    self.live_seconds = live_seconds
    self._sums = None
    self._window_start_step = start_step
    self._window_start_time = None
    self._run_start = (start_step, None)
    self._last_live = 0.0
    self._lr = None
    self._writer = None
    self.history: list[dict[str, float]] = []
    self.first_loss: float | None = None
    if model_dir is not None and jax.process_index() == 0:
      import tensorflow as tf  # only host 0 pays for TensorFlow's summary writer
      from tensorflow.core.framework import summary_pb2

      self._tf = tf
      from flan import paths  # TensorFlow's file system reads gs:// itself; local made absolute

      self._writer = tf.summary.create_file_writer(str(paths.path(model_dir) / "train"))
      self._scalar_metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
      )

  def update(self, step: int, metrics: Mapping[str, jax.Array]) -> None:
    """Records the metrics of the step that just ended at `step` (after the update)."""
    self._sums = dict(metrics) if self._sums is None else _add(self._sums, dict(metrics))
    self._lr = metrics.get("learning_rate")
    now = time.time()
    if self._window_start_time is None:  # the first step includes compilation: not timed
      self.first_loss = float(jax.device_get(metrics["loss"]))
      now = time.time()
      self._window_start_time, self._run_start = now, (step, now)
      self._sums, self._window_start_step = None, step
      return
    if step % self.log_every == 0 or step == self.total_steps:
      self._report(step, now)
    elif now - self._last_live >= self.live_seconds:
      self._live(step, metrics, now)

  def _live(self, step: int, metrics: Mapping[str, jax.Array], now: float) -> None:
    sums = jax.device_get(self._sums)
    now = time.time()  # after the fetch, so the time covers the steps' work, not dispatch
    self._last_live = now
    first_step, t0 = self._run_start
    rate = (step - first_step) / (now - t0) if now > t0 else 0.0
    eta = (self.total_steps - step) / rate if rate else float("nan")
    elapsed = now - self._window_start_time
    tokens = float(sums["num_encoder_tokens"] + sums["num_decoder_tokens"])
    line = (
      f"step {step}/{self.total_steps}  loss {float(metrics['loss']):.4f}  "
      f"{tokens / elapsed if elapsed else 0:,.0f} tokens/s  "
      f"ETA {_fmt_duration(eta) if rate else '?'}"
    )
    if sys.stderr.isatty():
      print("\r" + line, end="", file=sys.stderr, flush=True)
    else:
      logging.info(line)

  def _report(self, step: int, now: float) -> None:
    steps = step - self._window_start_step
    if steps <= 0 or self._sums is None:
      return
    sums = jax.device_get(self._sums)  # waits for the window's last step ...
    now = time.time()  # ... so the window's time covers its work, not just its dispatch
    stats = summarize(
      sums,
      steps=steps,
      seconds=now - self._window_start_time,
      flops_per_step=self.flops_per_step,
      peak_flops=self.peak_flops,
    )
    stats["learning_rate"] = float(self._last_lr())
    data = self.data_stats()
    if "truncated_examples" in data:
      stats["data/truncated_examples"] = float(data["truncated_examples"])
    stats["step"] = step
    self.history.append(stats)
    mfu = (
      f"  MFU {stats['mfu']:.1%}"
      if "mfu" in stats
      else (f"  {stats.get('model_tflops_per_second_per_device', 0):.3f} TFLOP/s/device")
    )
    if sys.stderr.isatty():
      print("\r", end="", file=sys.stderr)
    logging.info(
      "step %d/%d  loss %.4f (%.3f/token)  acc %.3f  lr %.2e  %s tokens/s  non-pad %.1f%%  "
      "truncated %d%s",
      step,
      self.total_steps,
      stats["loss"],
      stats["loss_per_target_token"],
      stats["accuracy"],
      stats["learning_rate"],
      f"{stats['timing/tokens_per_second']:,.0f}",
      100 * stats["non_padding_fraction/overall"],
      int(stats.get("data/truncated_examples", 0)),
      mfu,
    )
    if self._writer is not None:
      with self._writer.as_default():
        for name, value in stats.items():
          if name != "step":
            # tf.summary.write is TensorFlow core; tf.summary.scalar would need the
            # tensorboard package. The "scalars" plugin tag makes them plot as scalars.
            self._tf.summary.write(
              name,
              self._tf.constant(value, self._tf.float32),
              step=step,
              metadata=self._scalar_metadata,
            )
      self._writer.flush()
    self._sums, self._window_start_step, self._window_start_time = None, step, now

  def _last_lr(self) -> float:
    return np.asarray(jax.device_get(self._lr)) if self._lr is not None else 0.0

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
