"""Parse ``--param KEY=VALUE`` options into method config fields."""

from __future__ import annotations

import json
from typing import Any

from fluorecon.core.errors import ConfigError, message


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """Turn ``["sigma=1.5", "fast=true", "name=x"]`` into ``{"sigma": 1.5, "fast": True, ...}``.

    Values are read as JSON where they parse (numbers, true/false, null, lists) and as plain
    strings otherwise; dashes in keys become underscores.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(message(f"--param {item!r}", "KEY=VALUE", "E.g. --param weight=0.05."))
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip().replace("-", "_")] = value
    return out
