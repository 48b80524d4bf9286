"""Settings as dataclass fields that carry their own help text.

Every knob of a model, a build, a server or a benchmark is a field of its config dataclass,
declared once with `option(default, help)`. The CLI turns these fields into its options, so
each default and each help text has exactly one source.
"""

from __future__ import annotations

import dataclasses


def option(default=dataclasses.MISSING, help: str = "", *, flag: str | None = None, cli: bool = True,
           repeat: bool = False, factory=dataclasses.MISSING):
    """A config field. `flag` overrides the CLI spelling ('--grace' or '--precomputed/--no-precomputed');
    `cli=False` keeps a field out of the command line (it is derived from other options). A tuple
    field is one comma-separated option of integers ('64,32,16'), or with `repeat` an option given
    once per string."""
    metadata = {"help": help, "flag": flag, "cli": cli, "repeat": repeat}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)
