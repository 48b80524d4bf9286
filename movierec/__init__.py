"""movierec: a two-stage movie recommendation engine."""

__version__ = "0.1.0"
