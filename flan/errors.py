"""`UserError`: bad input from the person running flan, reported as one `error:` line.

Raised where a setting or a file is wrong (a gin macro out of range, a path that does not
exist); the entry points print its message without a traceback. Internal bugs raise
anything else and keep their traceback. A subclass of ValueError, so callers that catch
ValueError for bad arguments keep working.
"""

from __future__ import annotations


class UserError(ValueError):
  """Bad user input: the message says what is wrong and how to fix it."""
