"""The peer of scripts/benchmark_train.py, in a process of its own: Hugging Face T5 + Adafactor.

`T5ForConditionalGeneration` (PyTorch) with the T5 1.1 settings of the size being measured
(gated GELU, untied logits, no dropout) and `transformers.optimization.Adafactor` (lr 1e-3,
parameter scaling, no relative step), the optimizer Hugging Face's T5 recipes use. bfloat16
runs under `torch.autocast`, as `--bf16` does in the Trainer.

It runs in a child process so that neither framework's thread pool competes with the other's
while it is being timed (in one process our step measured 25-30% slower after the peer's
steps). The parent talks to it over a pipe: `PeerProcess.load(name, batches)`,
`PeerProcess.run(name, steps)`, `PeerProcess.info()`. Nothing here imports JAX.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from typing import Any

import numpy as np

PAD, EOS = 0, 1


def available() -> str | None:
  """None when torch + transformers import, else why not."""
  try:
    import torch  # noqa: F401
    import transformers  # noqa: F401
  except ImportError as e:
    return f"{e.name} is not installed (pip install -e '.[bench]')"
  return None


def peak_rss() -> float:
  """This process's peak resident set size in bytes (VmHWM), NaN where unknown."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return float(line.split()[1]) * 1024
  except OSError:
    pass
  return float("nan")


class Peer:
  """The model, its optimizer and named sets of batches already converted to tensors."""

  def __init__(self, hf_config: dict[str, Any], dtype: str):
    import torch
    import transformers
    from transformers.optimization import Adafactor

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    self.torch = torch
    self.device = "cuda" if torch.cuda.is_available() else "cpu"
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(**hf_config))
    # transformers 5 ties lm_head to the embedding whatever the config says: untie (T5 1.1).
    model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
    self.model = model.to(self.device).train()
    self.opt = Adafactor(
      model.parameters(),
      lr=1e-3,
      scale_parameter=True,
      relative_step=False,
      warmup_init=False,
      clip_threshold=1.0,
      decay_rate=-0.8,
    )
    self.autocast = lambda: torch.autocast(
      self.device, dtype=torch.bfloat16, enabled=dtype == "bfloat16"
    )
    self.sets: dict[str, list[dict[str, Any]]] = {}
    self.position: dict[str, int] = {}
    self.loss = float("nan")
    self.versions = {
      "torch": torch.__version__,
      "transformers": transformers.__version__,
      "torch_threads": torch.get_num_threads(),
      "device": self.device,
    }

  def load(self, name: str, batches: list[dict[str, np.ndarray]]) -> None:
    """Converts a set of batches (EncDecFeatureConverter layout, unpacked) to model inputs."""

    def t(x):
      return self.torch.from_numpy(np.asarray(x, np.int64)).to(self.device)

    self.sets[name] = [
      {
        "input_ids": t(b["encoder_input_tokens"]),
        "attention_mask": t(b["encoder_input_tokens"] != PAD),
        "decoder_input_ids": t(b["decoder_input_tokens"]),
        "decoder_attention_mask": t(b["decoder_loss_weights"] > 0),
        "labels": t(np.where(b["decoder_loss_weights"] > 0, b["decoder_target_tokens"], -100)),
      }
      for b in batches
    ]
    self.position[name] = 0

  def run(self, name: str, steps: int) -> list[tuple[float, float, int]]:
    """(wall s, process CPU s, batch index) of each of `steps` full steps (forward, backward,
    update), cycling through the set's batches."""
    sync = self.torch.cuda.synchronize if self.device == "cuda" else (lambda: None)
    batches, times = self.sets[name], []
    for _ in range(steps):
      index = self.position[name] % len(batches)
      inputs = batches[index]
      sync()
      t0, c0 = time.perf_counter(), time.process_time()
      with self.autocast():
        out = self.model(**inputs)
      out.loss.backward()
      self.opt.step()
      self.opt.zero_grad(set_to_none=True)
      sync()
      times.append((time.perf_counter() - t0, time.process_time() - c0, index))
      self.position[name] += 1
      self.loss = float(out.loss.detach())
    return times

  def info(self) -> dict[str, Any]:
    out = {**self.versions, "last_loss": self.loss, "process_peak_rss_bytes": peak_rss()}
    if self.device == "cuda":
      out["peak_memory_bytes"] = float(self.torch.cuda.max_memory_allocated())
    return out


def _serve(conn, hf_config: dict[str, Any], dtype: str) -> None:
  """The child's loop: one request in, one ("ok", result) or ("error", traceback) out."""
  try:
    peer = Peer(hf_config, dtype)
    conn.send(("ok", None))
  except Exception:  # pylint: disable=broad-except
    conn.send(("error", traceback.format_exc()))
    return
  while True:
    request = conn.recv()
    if request[0] == "stop":
      return
    try:
      conn.send(("ok", getattr(peer, request[0])(*request[1:])))
    except Exception:  # pylint: disable=broad-except
      conn.send(("error", traceback.format_exc()))


class PeerProcess:
  """A `Peer` in a spawned child process (no JAX, no shared thread pools)."""

  def __init__(self, hf_config: dict[str, Any], dtype: str):
    ctx = multiprocessing.get_context("spawn")
    self.conn, child = ctx.Pipe()
    self.process = ctx.Process(target=_serve, args=(child, hf_config, dtype), daemon=True)
    self.process.start()
    self._reply()

  def _reply(self) -> Any:
    status, value = self.conn.recv()
    if status != "ok":
      raise RuntimeError(f"the peer process failed:\n{value}")
    return value

  def _call(self, *request: Any) -> Any:
    self.conn.send(request)
    return self._reply()

  def load(self, name: str, batches: list[dict[str, np.ndarray]]) -> None:
    self._call("load", name, batches)

  def run(self, name: str, steps: int) -> list[tuple[float, float, int]]:
    return self._call("run", name, steps)

  def info(self) -> dict[str, Any]:
    return self._call("info")

  def close(self) -> None:
    if self.process.is_alive():
      self.conn.send(("stop",))
      self.process.join(timeout=30)
    if self.process.is_alive():
      self.process.kill()
