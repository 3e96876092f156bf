"""Vocabularies: the T5 SentencePiece model, or bytes when no model is given.

`get_vocabulary(path)` is what the gin macro `VOCABULARY` feeds. The byte vocabulary needs
no file, so smoke runs and tests work without the 800 kB T5 model; real runs pass the
SentencePiece model (T5's ids: pad 0, eos 1, unk 2) plus T5's 100 sentinel ids.

Model configs set `vocab_size` themselves (32128 for the T5 model with its extra ids, padded
to a multiple of 128); `DEFAULT_VOCAB_SIZE` records that number for checks.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import seqio

from flan.errors import UserError

EXTRA_IDS = 100  # T5's sentinels <extra_id_0..99>.
DEFAULT_VOCAB_SIZE = 32128  # The T5 SentencePiece model (32000 + 100 extra ids, padded).
BYTE = "byte"


def get_vocabulary(path: str | None = None) -> seqio.Vocabulary:
  """The vocabulary at `path`.

  Args:
    path: a SentencePiece model file (local or any `tf.io.gfile` path such as gs://), or
      None / "byte" for `seqio.ByteVocabulary` (no file needed).

  Raises:
    UserError: `path` names no file, or not a SentencePiece model; the message says how to
      fix it.
  """
  if path is None or path == BYTE:
    return seqio.ByteVocabulary()
  path = os.fspath(path)
  if "://" not in path:
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
      raise UserError(
        f"SentencePiece model not found: {path!r}. Pass the path of T5's spiece.model "
        '(e.g. --gin.VOCABULARY="\'../shared/vocab/t5_spiece.model\'"), or "byte" / None '
        "for the byte vocabulary."
      )
  else:
    import tensorflow as tf  # only remote paths need gfile.

    if not tf.io.gfile.exists(path):
      raise UserError(f"SentencePiece model not found: {path!r}.")
  vocab = seqio.SentencePieceVocabulary(path, extra_ids=EXTRA_IDS)
  try:
    _ = vocab.vocab_size  # loads the model now: a wrong file fails here, not mid-pipeline
  except Exception as e:
    raise UserError(
      f"VOCABULARY={path!r} is not a SentencePiece model ({type(e).__name__}: "
      f"{str(e).splitlines()[0] if str(e) else 'unreadable'}); pass T5's "
      'spiece.model, or "byte" / None for the byte vocabulary.'
    ) from None
  return vocab


def fingerprint(path: str | None) -> dict[str, Any]:
  """What identifies a vocabulary: {"path", "sha256" of the model file (None for bytes)}."""
  if path is None or path == BYTE:
    return {"path": BYTE, "sha256": None}
  path = os.fspath(path)
  if "://" in path:
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "rb") as f:
      data = f.read()
  else:
    path = os.path.expanduser(path)
    with open(path, "rb") as f:
      data = f.read()
  return {"path": path, "sha256": hashlib.sha256(data).hexdigest()}


def ids_fingerprint(vocabulary: seqio.Vocabulary) -> dict:
  """What identifies `vocabulary`'s token ids: its kind, sizes and a hash of its model.

  Two SentencePiece models at the same path with different contents differ here.
  """
  out = {
    "kind": type(vocabulary).__name__,
    "extra_ids": int(vocabulary.extra_ids),
    "eos_id": int(vocabulary.eos_id),
  }
  model = getattr(vocabulary, "sp_model", None)
  if model is not None:
    out["model_sha256"] = hashlib.sha256(model).hexdigest()
  return out
