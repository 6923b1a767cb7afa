"""Registry of methods by name.

Classical methods register when :mod:`fluorecon.methods.classical` is imported.
Learned methods (torch) are registered lazily as ``"module:Class"`` strings, so that
listing methods never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from fluorecon.core.errors import ConfigError, message
from fluorecon.methods.base import Method

_REGISTRY: dict[str, type[Method] | str] = {}
_LOADED_BUILTINS = False


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding ``cls`` to the registry under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def register_lazy(name: str, target: str) -> None:
    """Register ``name`` as ``"package.module:ClassName"``, imported on first use."""
    _REGISTRY.setdefault(name, target)


def _load_builtins() -> None:
    global _LOADED_BUILTINS
    if not _LOADED_BUILTINS:
        _LOADED_BUILTINS = True
        importlib.import_module("fluorecon.methods.classical")
        importlib.import_module("fluorecon.methods.learned_names")


def import_target(target: str) -> Any:
    """Import ``"package.module:Name"`` and return ``Name`` (the form of lazy entries)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_method(name: str) -> type[Method]:
    """Return the method class registered as ``name``.

    Raises
    ------
    ConfigError
        If no method has that name; the message lists the available ones.
    """
    _load_builtins()
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ConfigError(message(f"method {name!r}", f"one of {', '.join(available())}",
                                  "Check the spelling (fluorecon methods lists them)."))
    if isinstance(entry, str):
        try:
            entry = import_target(entry)
        except ImportError as exc:
            missing = exc.name or "a dependency"
            raise ConfigError(message(f"method {name!r}, which needs {missing} (not installed)",
                                      "the learned-methods extra",
                                      "Install it with: pip install 'fluorecon[torch]'.")) from None
        _REGISTRY[name] = entry
    return entry


def create(name: str, /, **kwargs: Any) -> Method:
    """Instantiate the method ``name`` with config fields (and extras such as ``psf``)."""
    return get_method(name)(**kwargs)


def is_lazy(name: str) -> bool:
    """True if ``name`` is registered but not imported yet (a learned method)."""
    _load_builtins()
    return isinstance(_REGISTRY.get(name), str)


def available(kind: str | None = None) -> list[str]:
    """Sorted names of registered methods, optionally only those of ``kind``.

    Filtering by ``kind`` imports nothing: lazy (learned) entries are included only when
    already imported.
    """
    _load_builtins()
    names = []
    for name, entry in _REGISTRY.items():
        if kind is None or (not isinstance(entry, str) and entry.kind == kind):
            names.append(name)
    return sorted(names)
