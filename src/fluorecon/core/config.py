"""Base class for every validated configuration (pydantic).

Configs forbid unknown fields, describe every field (CLI help comes from these
descriptions), carry a schema ``version`` and round-trip through JSON. Validators
validate, they never mutate.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from fluorecon.core.errors import ConfigError


class BaseConfig(BaseModel):
    """Frozen pydantic model with ``extra="forbid"``.

    Use :meth:`build` instead of the constructor where a :class:`ConfigError` with a
    one-line message is wanted instead of pydantic's multi-line ``ValidationError``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @classmethod
    def build(cls, **kwargs: Any) -> "BaseConfig":
        """Validate ``kwargs`` into a config, raising :class:`ConfigError` on bad values."""
        try:
            return cls(**kwargs)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(cls.__name__, exc)) from None

    def to_json(self) -> str:
        """Serialise to a JSON string (``model_validate_json`` reads it back)."""
        return self.model_dump_json(indent=2)


def format_validation_error(name: str, exc: ValidationError) -> str:
    """One line per problem, joined by ``'; '``: ``field: message (got value)``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "config"
        got = err.get("input")
        got_text = "" if isinstance(got, dict) else f" (got {got!r})"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}{got_text}")
    return f"Invalid {name}: " + "; ".join(parts)
