"""Registries of classes by name: what model files, ``check_all`` and the command line look classes up in.

A class registers under its bare name when it is defined (``__init_subclass__``).  Two classes may not
share a name: a user's class named ``Dense`` would otherwise replace the built-in one and change what every
saved file loads as.  A class redefined under the same module and name (a re-run notebook cell, a reloaded
module) replaces its older self.  Bases that are not meant to be built from a file -- a name starting with
``_``, or ``abstract = True`` in the class body (``ParametricLayer``, ``Activation``) -- are not registered.
"""

from __future__ import annotations

from typing import Any

__all__ = ["register"]


def register(registry: dict[str, Any], cls: type, what: str) -> None:
    """Add ``cls`` to ``registry`` under its name; a ``TypeError`` if another class holds the name."""
    name = cls.__name__
    if name.startswith("_") or cls.__dict__.get("abstract", False):
        return
    held = registry.get(name)
    if held is not None and held is not cls and (held.__module__, held.__qualname__) != (cls.__module__,
                                                                                          cls.__qualname__):
        raise TypeError(f"{what} class {cls.__module__}.{cls.__qualname__}: the name {name!r} is taken by "
                        f"{held.__module__}.{held.__qualname__} (model files store {what}s by class name); "
                        f"give the class another name")
    registry[name] = cls
