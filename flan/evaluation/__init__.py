"""Evaluation: leave-one-cluster-out, zero- and few-shot, rank classification and generation.

Depends on `flan.data` and `flan.model`. `inference` (batched scoring and decoding on a mesh)
and `metrics` -> `few_shot` -> `holdout` (a cluster's evaluation) -> `report` tables and charts.
"""
