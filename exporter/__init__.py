"""edgeasr: personalised, budget-fitted Whisper models for phones."""

__version__ = "0.1.0"
