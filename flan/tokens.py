"""The special token ids every part of flan agrees on.

T5's SentencePiece vocabulary and seqio's byte vocabulary both put PAD at 0 and EOS at 1;
PAD is also the decoder's first input (seqio's EncDecFeatureConverter shifts targets right
with 0). EOS-keeping truncation lives in `flan.data.packing.truncate`.
"""

from __future__ import annotations

PAD_ID = 0
EOS_ID = 1
