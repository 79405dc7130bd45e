"""The one exception type users see.

Anything raised as `EdgeAsrError` is a problem with the user's input or environment; the CLI prints its
message on one line and exits non-zero, without a traceback. Every other exception is a bug in edgeasr.
"""


class EdgeAsrError(Exception):
    """A clear, actionable error about the user's input or environment."""
