"""The base of every error movierec raises for input a user can fix; the CLI prints these
as one line and exits with status 2."""


class MovieRecError(Exception):
    """A problem with what was given (a path, a file, a setting), not a bug."""
