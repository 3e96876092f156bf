"""Test setup: 8 fake CPU devices, one XLA compilation cache, and the shared test data's paths."""

import atexit
import os
import pathlib
import shutil
import tempfile

# Must happen before jax is imported anywhere: a fake 8-device mesh on the host CPU.
os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA compilation cache for the session, fresh each session, which the
# subprocesses the tests start (`python -m flan.train`, the benchmarks) inherit: the same
# tiny model is compiled by many runs (each restart of a resumed run, each process of a
# multi-process run), and a cache hit is the executable the compiler gave the first time, so
# what a test proves does not change; only the repeated compile time goes. A cache set by
# the caller is used as it is.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _XLA_CACHE = tempfile.mkdtemp(prefix="flan-tests-xla-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE
  atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
_SHARED = ROOT.parent / "shared"


def _path(env: str, default: pathlib.Path) -> pathlib.Path:
  value = os.environ.get(env)
  return pathlib.Path(value).resolve() if value else default


DATA_DIR = _path("FLAN_TEST_DATA_DIR", _SHARED / "data" / "tfds")
VOCAB = _path("FLAN_TEST_VOCAB", _SHARED / "vocab" / "t5_spiece.model")


@pytest.fixture(scope="session")
def data_dir() -> str:
  """The prepared TFDS samples in ../shared (realdata tests skip without them)."""
  if not DATA_DIR.is_dir():
    pytest.skip(
      f"realdata: no prepared TFDS data at {DATA_DIR} (set FLAN_TEST_DATA_DIR or "
      "check out ../shared beside the project)."
    )
  return str(DATA_DIR)


@pytest.fixture(scope="session")
def vocab_path() -> str:
  """The real T5 SentencePiece model in ../shared."""
  if not VOCAB.is_file():
    pytest.skip(f"realdata: no T5 SentencePiece model at {VOCAB} (set FLAN_TEST_VOCAB).")
  return str(VOCAB)


@pytest.fixture
def clean_gin():
  """A clean gin config, and the root logger restored, around a test that runs `main()`."""
  import logging

  import gin

  gin.clear_config()
  root = logging.getLogger()
  handlers, level = root.handlers[:], root.level
  yield
  gin.clear_config()
  root.handlers[:] = handlers  # main() points logging at the (captured) stderr of its test
  root.setLevel(level)
