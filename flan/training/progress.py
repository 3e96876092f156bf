"""What the training loop reports: a live progress line, periodic stats and TensorBoard.

Step metrics stay on device and are summed there; the host reads them only when it
prints (every `live_seconds` for the progress line, every `log_every` steps for the full
report), so logging never stalls the device pipeline. The periodic stats go to a clu
`MetricWriter` (host 0: MODEL_DIR/train, see `flan.training.summaries`) under t5x's names
(`loss`, `loss_per_nonpadding_target_token`, `cross_ent_loss`, `timing/seconds`,
`effective_batch_size/*`, ...) beside a few of our own.
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
  """Derived statistics from metric sums over `steps` steps taking `seconds`.

  t5x's metrics (`t5x.models.compute_base_metrics`, with its meanings) and ours:
    loss, z_loss, cross_ent_loss: per step (the model's loss is a token sum unless
      LOSS_NORMALIZING_FACTOR is set); *_per_all_target_tokens: divided by the target
      slots (batch x target length, padding included); loss_per_nonpadding_target_token:
      by the loss weights.
    loss_per_target_token (ours): the cross-entropy per loss-weighted token, whatever the
      normaliser: the number the progress line shows.
    timing/target_tokens_per_second: target slots per second, as t5x counts them;
      timing/tokens_per_second (ours): non-padding input and target tokens per second.
    effective_batch_size/{encoder,decoder}: packed examples per step (packed runs only).
  """
  get = lambda k: float(sums.get(k, 0.0))
  per_step = lambda k: get(k) / max(steps, 1)
  ratio = lambda a, b: a / b if b else 0.0
  rate = lambda x: x / seconds if seconds else 0.0
  cores = jax.device_count()
  tokens = get("num_encoder_tokens") + get("num_decoder_tokens")
  slots = get("encoder_slots") + get("decoder_slots")
  target_slots, weights = get("decoder_slots"), get("num_loss_weights")
  out = {
    "loss": per_step("loss"),
    "loss_per_nonpadding_target_token": ratio(get("loss"), weights),
    "loss_per_all_target_tokens": ratio(get("loss"), target_slots),
    "loss_per_target_token": ratio(
      get("cross_ent_sum") if "cross_ent_sum" in sums else get("cross_ent_loss"),
      max(get("num_tokens"), 1.0),
    ),
    "z_loss": per_step("z_loss"),
    "z_loss_per_all_target_tokens": ratio(get("z_loss"), target_slots),
    "cross_ent_loss": per_step("cross_ent_loss"),
    "cross_ent_loss_per_all_target_tokens": ratio(get("cross_ent_loss"), target_slots),
    "accuracy": get("accuracy") / max(get("num_tokens"), 1.0),
    "grad_norm": per_step("grad_norm"),
    "learning_rate": per_step("learning_rate"),  # t5x: the mean; learning_rate/current: last
    "skipped_updates": get("skipped_updates"),
    "timing/seconds": seconds,
    "timing/steps_per_second": rate(steps),
    "timing/seqs": get("num_sequences"),
    "timing/seqs_per_second": rate(get("num_sequences")),
    "timing/seqs_per_second_per_core": rate(get("num_sequences")) / cores,
    "timing/target_tokens_per_second": rate(target_slots),
    "timing/target_tokens_per_second_per_core": rate(target_slots) / cores,
    "timing/tokens_per_second": rate(tokens),
    "non_padding_fraction/overall": ratio(tokens, slots),
    "non_padding_fraction/encoder": ratio(get("num_encoder_tokens"), get("encoder_slots")),
    "non_padding_fraction/decoder": ratio(get("num_decoder_tokens"), target_slots),
    "non_padding_fraction/loss_weights": ratio(weights, target_slots),
  }
  for side in ("encoder", "decoder"):
    if f"num_{side}_segments" in sums:
      out[f"effective_batch_size/{side}"] = per_step(f"num_{side}_segments")
  if flops_per_step and seconds:
    achieved = flops_per_step * steps / seconds / cores
    out["model_tflops_per_second_per_device"] = achieved / 1e12
    if peak_flops:
      out["mfu"] = achieved / peak_flops
  return out


def per_token_loss(sums: Mapping[str, Any]) -> float:
  """Cross-entropy per loss-weighted token from (summed) step metrics."""
  total = sums["cross_ent_sum"] if "cross_ent_sum" in sums else sums["cross_ent_loss"]
  return float(total) / max(float(sums.get("num_tokens", 0.0)), 1.0)


class Progress:
  """Accumulates step metrics on device; prints and writes summaries at the edges.

  Args:
    total_steps: the step the run ends at (for step/total and the ETA).
    start_step: the step the run (re)started from.
    log_every: steps between full reports and summary writes.
    writer: a clu `MetricWriter` for the periodic stats (host 0: MODEL_DIR/train); None
      writes none.
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
    writer: Any = None,
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
    self._writer = writer
    self.history: list[dict[str, float]] = []
    self.first_loss: float | None = None

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
      self._live(step, now)

  def _live(self, step: int, now: float) -> None:
    sums = jax.device_get(self._sums)
    now = time.time()  # after the fetch, so the time covers the steps' work, not dispatch
    self._last_live = now
    first_step, t0 = self._run_start
    rate = (step - first_step) / (now - t0) if now > t0 else 0.0
    eta = (self.total_steps - step) / rate if rate else float("nan")
    elapsed = now - self._window_start_time
    tokens = float(sums["num_encoder_tokens"] + sums["num_decoder_tokens"])
    line = (
      f"step {step}/{self.total_steps}  loss {per_token_loss(sums):.3f}/token  "
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
    stats["learning_rate/current"] = float(self._last_lr())
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
      "step %d/%d  loss %.3f/token  acc %.3f  lr %.2e  %s tokens/s  non-pad %.1f%%  "
      "truncated %d  skipped %d%s",
      step,
      self.total_steps,
      stats["loss_per_target_token"],
      stats["accuracy"],
      stats["learning_rate/current"],
      f"{stats['timing/tokens_per_second']:,.0f}",
      100 * stats["non_padding_fraction/overall"],
      int(stats.get("data/truncated_examples", 0)),
      int(stats["skipped_updates"]),
      mfu,
    )
    if self._writer is not None:
      self._writer.write_scalars(step, {k: v for k, v in stats.items() if k != "step"})
      self._writer.flush()
    self._sums, self._window_start_step, self._window_start_time = None, step, now

  def exclude(self, seconds: float) -> None:
    """Leaves `seconds` spent outside training (an evaluation) out of rates and the ETA."""
    if self._window_start_time is not None:
      self._window_start_time += seconds
      first_step, t0 = self._run_start
      self._run_start = (first_step, t0 + seconds)

  def _last_lr(self) -> float:
    return np.asarray(jax.device_get(self._lr)) if self._lr is not None else 0.0

  def close(self) -> None:
    if self._writer is not None:
      self._writer.flush()
