"""Named plug-ins: recall channels, rankers and vector indexes are looked up by the name a
bundle's manifest gives them.

A registry maps a name to the plug-in class, or to "module:Class" so that nothing is imported
until a bundle asks for it (a server imports only the components its bundle lists). Adding a
plug-in is one module and one line: an entry in the registry's table, or `register()`.
"""

from __future__ import annotations

import importlib

from movierec.errors import MovieRecError


class UnknownComponent(MovieRecError):
    """A manifest or an option names a component no registry knows."""


class Registry:
    def __init__(self, kind: str, entries: dict[str, object]):
        self.kind = kind
        self._entries = dict(entries)

    def register(self, name: str, component: object) -> None:
        self._entries[name] = component

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str):
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownComponent(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}")
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = getattr(importlib.import_module(module), attribute)
            self._entries[name] = entry
        return entry
