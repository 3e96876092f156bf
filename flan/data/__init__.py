"""Data: the 62 FLAN datasets as seqio tasks and mixtures, and the packed training stream.

Leaf of the package graph beside `flan.model`: nothing here imports the model, training or
evaluation. `datasets` (the one table) -> `clusters` -> `preprocessors` and `templates` ->
`examples` (reading and rendering, pure Python) -> `tasks` -> `mixtures` (seqio registration);
`packing` -> `mixture_stream` -> `input_pipeline` (the exactly resumable training stream).
"""
