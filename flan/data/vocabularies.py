"""Vocabularies: the T5 SentencePiece model, or bytes when no model is given.

`get_vocabulary(path)` is what the gin macro `VOCABULARY` feeds. The byte vocabulary needs
no file, so smoke runs and tests work without the 800 kB T5 model; real runs pass the
SentencePiece model (T5's ids: pad 0, eos 1, unk 2) plus T5's 100 sentinel ids.

Model configs set `vocab_size` themselves (32128 for the T5 model with its extra ids, padded
to a multiple of 128); `DEFAULT_VOCAB_SIZE` records that number for checks.
"""

from __future__ import annotations

import os

import seqio

EXTRA_IDS = 100  # T5's sentinels <extra_id_0..99>.
DEFAULT_VOCAB_SIZE = 32128  # The T5 SentencePiece model (32000 + 100 extra ids, padded).
BYTE = "byte"


def get_vocabulary(path: str | None = None) -> seqio.Vocabulary:
  """The vocabulary at `path`.

  Args:
    path: a SentencePiece model file (local or any `tf.io.gfile` path such as gs://), or
      None / "byte" for `seqio.ByteVocabulary` (no file needed).

  Raises:
    FileNotFoundError: `path` names no file; the message says how to fix it.
  """
  if path is None or path == BYTE:
    return seqio.ByteVocabulary()
  path = os.fspath(path)
  if "://" not in path:
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
      raise FileNotFoundError(
        f"SentencePiece model not found: {path!r}. Pass the path of T5's spiece.model "
        '(e.g. --gin.VOCABULARY="\'../shared/vocab/t5_spiece.model\'"), or "byte" / None '
        "for the byte vocabulary."
      )
  else:
    import tensorflow as tf  # only remote paths need gfile.

    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(f"SentencePiece model not found: {path!r}.")
  return seqio.SentencePieceVocabulary(path, extra_ids=EXTRA_IDS)
