"""movierec: a two-stage movie recommendation engine. This package is its foundation (errors,
files, the plug-in registry, config options, default paths); the stages are its subpackages."""

__version__ = "0.1.0"
