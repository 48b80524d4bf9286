"""The base of every error movierec raises for input a user can fix. The CLI prints these as
one line and exits with status 2; anything else is a bug and shows as one."""


class MovieRecError(Exception):
    """A problem with what was given (a path, a file, a setting), not a bug."""


class ConfigError(MovieRecError, ValueError):
    """A setting out of its range, or settings that do not go together."""


def echo(value, limit: int = 100) -> str:
    """`repr(value)` for an error message, cut to about `limit` characters: a message never
    repeats input of any size back."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"
