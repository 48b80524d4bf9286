"""Command-line options made from config dataclasses (`movierec.options.option` fields), so a
default and its help text are written once, in the config."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from typing import List, Optional

import typer

from movierec.errors import ConfigError


def _flag(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _declarations(field: dataclasses.Field, hint) -> str:
    """The option's spelling; a bool without its own gets --name/--no-name."""
    flag = _flag(field)
    if hint is bool and not field.metadata.get("flag"):
        return f"{flag}/--no-{flag[2:]}"
    return flag


def _is_tuple(hint) -> bool:
    return hint is tuple or typing.get_origin(hint) is tuple


def _annotation(field: dataclasses.Field, hint):
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return Optional[inner[0]]
    if _is_tuple(hint):
        return List[str] if field.metadata.get("repeat") else str
    return hint


def _default(field: dataclasses.Field):
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    if isinstance(default, tuple) and not field.metadata.get("repeat"):
        return ",".join(str(v) for v in default)
    return list(default) if isinstance(default, tuple) else default


def _parse(field: dataclasses.Field, value):
    """A tuple field's option text back to the tuple: repeated strings, or comma-separated integers."""
    if field.metadata.get("repeat"):
        return tuple(value)
    try:
        return tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{_flag(field)} takes comma-separated integers, not {value!r}") from None


def config_fields(config_type: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(config_type) if f.init and f.metadata.get("cli", True)]


def with_config(command):
    """Replace each parameter of `command` annotated with a config dataclass by one option per
    field of it; the command receives the dataclass, built (and so validated) from them."""
    hints = typing.get_type_hints(command)
    parameters, configs = [], {}
    for parameter in inspect.signature(command).parameters.values():
        config_type = hints.get(parameter.name)
        if not (isinstance(config_type, type) and dataclasses.is_dataclass(config_type)):
            parameters.append(parameter.replace(annotation=hints.get(parameter.name, parameter.annotation)))
            continue
        fields = config_fields(config_type)
        type_hints = typing.get_type_hints(config_type)
        configs[parameter.name] = (config_type, [(f, _is_tuple(type_hints[f.name])) for f in fields])
        for field in fields:
            parameters.append(inspect.Parameter(
                field.name, inspect.Parameter.KEYWORD_ONLY, annotation=_annotation(field, type_hints[field.name]),
                default=typer.Option(_default(field), _declarations(field, type_hints[field.name]),
                                     help=field.metadata.get("help", ""))))
    names = [p.name for p in parameters]
    clashes = {name for name in names if names.count(name) > 1}
    if clashes:
        raise TypeError(f"{command.__name__}: options {sorted(clashes)} are both the command's and a config's")

    @functools.wraps(command)
    def wrapper(**values):
        for name, (config_type, fields) in configs.items():
            settings = {field.name: _parse(field, values.pop(field.name)) if is_tuple else values.pop(field.name)
                        for field, is_tuple in fields}
            values[name] = config_type(**settings)
        return command(**values)

    wrapper.__signature__ = inspect.Signature([p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in parameters])
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__
    return wrapper
