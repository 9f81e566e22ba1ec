"""The one base class of the errors flowergan reports to its users."""


class FlowerganError(ValueError):
  """A problem the user can fix (a value, a file, a path, a checkpoint).

  The message is one line that says what is wrong and what to do; the entry points print it
  and exit with status 1, without a traceback.
  """
