"""One registry pattern for readers, models, losses and metrics."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

from nowcast_cli.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named objects registered with a decorator and looked up case-insensitively.

    Parameters
    ----------
    kind : str
        What the registry holds, in the singular ("source", "model"); used in messages.
    plural : str, optional
        Its plural, when not `kind` + "s" ("losses").
    """

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Return a decorator that registers its argument under `name`.

        Registering a name twice raises `ValueError`: it is a programming error.
        """
        key = name.lower()

        def decorator(obj: T) -> T:
            if key in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[key] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the object registered as `name`.

        Raises
        ------
        UnknownNameError
            If no such name exists; the message lists the valid names and the closest match.
        """
        key = name.lower()
        if key in self._items:
            return self._items[key]
        names = self.names()
        close = difflib.get_close_matches(key, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}.{hint} Valid {self.plural}: {', '.join(names)}"
        )

    def names(self) -> list[str]:
        """Return the registered names, sorted."""
        return sorted(self._items)

    def describe(self) -> dict[str, str]:
        """Return each name with the first line of its object's docstring."""
        out: dict[str, str] = {}
        for name in self.names():
            doc = (getattr(self._items[name], "__doc__", None) or "").strip()
            out[name] = doc.splitlines()[0] if doc else ""
        return out

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __len__(self) -> int:
        return len(self._items)
