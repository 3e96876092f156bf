"""What a run prints on stderr: the project's log lines, without the libraries' start-up noise.

Every line is `<date> <time>,<ms> <LEVEL> <message>` (`LOG_FORMAT`). Loading TensorFlow (the
data pipeline) prints C++ log lines that say nothing about the run: oneDNN and CPU-feature
notices, "Could not find cuda drivers", and on every machine without a GPU a `cuInit` ERROR;
TFDS, TensorFlow and orbax add Python warnings through absl (ten `TensorInfo.dtype`
deprecations per run, `from_generator` deprecations). By default they are kept out:

  - TensorFlow's first import (by seqio, TFDS or us) runs with the process's stderr (file
    descriptor 2) pointed at /dev/null: the C++ lines are printed while its shared
    libraries load, before any log level is read, so this is the one way to hold them;
  - the `absl` and `tensorflow` Python loggers show errors only.

FLAN_VERBOSE_LIBS=1 in the environment (or `setup(verbose_libraries=True)`) keeps all of
it. Either way, after `setup` TensorFlow is kept off the GPUs: it only feeds data, and would
otherwise take their memory from JAX.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys
from collections.abc import Iterator

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
VERBOSE_ENV = "FLAN_VERBOSE_LIBS"
_QUIET_LOGGERS = ("absl", "tensorflow")


def libraries_verbose() -> bool:
  """Whether FLAN_VERBOSE_LIBS asks for the libraries' own log lines."""
  return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def setup(verbose_libraries: bool | None = None) -> None:
  """Sends logging to stderr in LOG_FORMAT at INFO; quietens the libraries (see above).

  Call first in an entry point's `main`, before anything imports TensorFlow.

  Args:
    verbose_libraries: keep the libraries' start-up lines and warnings (default:
      FLAN_VERBOSE_LIBS).
  """
  verbose = libraries_verbose() if verbose_libraries is None else verbose_libraries
  # force: absl (imported by JAX/orbax) has already put a handler on the root logger.
  logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, force=True)
  logging.getLogger("jax").setLevel(logging.WARNING)
  for name in _QUIET_LOGGERS:  # TFDS/orbax report through absl
    logging.getLogger(name).setLevel(logging.WARNING if verbose else logging.ERROR)
  for finder in [f for f in sys.meta_path if isinstance(f, _QuietTensorFlow)]:
    sys.meta_path.remove(finder)
  if "tensorflow" not in sys.modules:
    sys.meta_path.insert(0, _QuietTensorFlow(quiet=not verbose))


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
  """Runs the first `import tensorflow`, whoever asks for it, with stderr held back.

  Installed on `sys.meta_path` by `setup`; removes itself at its first use. The package is
  found and loaded by the usual finders; only its execution (which prints the C++ start-up
  lines) and the device listing after it (the cuInit line) happen inside the quiet window.
  """

  def __init__(self, quiet: bool):
    self.quiet = quiet

  def find_spec(self, name, path, target=None):
    if name != "tensorflow":
      return None
    sys.meta_path.remove(self)
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.loader is not None:
      spec.loader = _QuietLoader(spec.loader, self.quiet)
    return spec


class _QuietLoader(importlib.abc.Loader):
  """Wraps TensorFlow's loader for one `exec_module`, then puts the real loader back."""

  def __init__(self, loader: importlib.abc.Loader, quiet: bool):
    self._loader, self._quiet = loader, quiet

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module) -> None:
    module.__spec__.loader = module.__loader__ = self._loader
    if self._quiet:
      os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _stderr_to_devnull(self._quiet):
      self._loader.exec_module(module)
      # TensorFlow only feeds data: keep it off the GPUs (and their memory) that JAX uses.
      # Listing the devices also initialises CUDA (the cuInit line) inside the quiet window.
      module.config.set_visible_devices([], "GPU")


@contextlib.contextmanager
def _stderr_to_devnull(active: bool) -> Iterator[None]:
  """Points file descriptor 2 at /dev/null inside the block (when `active`)."""
  if not active:
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  null = os.open(os.devnull, os.O_WRONLY)
  os.dup2(null, 2)
  os.close(null)
  try:
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
