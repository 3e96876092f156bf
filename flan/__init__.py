"""flan: FLAN instruction tuning end to end (seqio tasks, a T5 1.1 trainer, held-out evaluation).

Importing `flan` registers nothing; `import flan.data.tasks` registers the seqio tasks and mixtures.
"""

__version__ = "0.1.0"
