"""Model: T5 1.1 / FLAN-T5 in Flax, its loss and scores, decoding, and its mapping onto a mesh.

Leaf of the package graph beside `flan.data`. `attention` -> `layers` -> `network` (the Flax
modules) -> `encoder_decoder` (loss, scores, predictions) with `decoding`; `partitioning` holds
the one logical-axis rules table; `hf` reads and writes Hugging Face T5 directories.
"""
