"""`UserError`: bad input from the person running flan, as opposed to a bug in flan.

Data, model and training code raise it (or a subclass) for a mistake the user can fix: a
misspelt name, a value out of range, a path that does not exist, a checkpoint of another
size. The command-line entry points print its message as ONE `error: ...` line and exit
with `EXIT_USER_ERROR`; every other exception is a bug and keeps its traceback. The message
says what is wrong and how to fix it, in one line.

It subclasses `ValueError` so that code (and tests) written against the `ValueError`s these
errors used to be keep working.
"""

from __future__ import annotations

EXIT_USER_ERROR = 1  # a UserError: one `error:` line on stderr
EXIT_USAGE = 2  # a malformed command line (unknown flag, missing argument), as argparse


class UserError(ValueError):
  """A mistake in the user's input; its message is shown as one `error:` line.

  `message` is the text as raised: gin appends "In call to configurable ..." to the string
  of an exception that leaves a configurable, which the entry points do not show.
  """

  def __init__(self, *args: object) -> None:
    super().__init__(*args)
    self.message = str(args[0]) if args else ""
