"""Typed readers of TOML values that raise a one-line ConfigError naming the file and key."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from monitor.config.settings import ConfigError


class _Validator:
    """Small typed readers that raise ConfigError naming the file and the dotted key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(self.source, key, problem, fix)

    def known_keys(
        self, table: Mapping[str, Any], key: str, allowed: set[str] | frozenset[str]
    ) -> None:
        for name in table:
            if name not in allowed:
                dotted = f"{key}.{name}" if key else name
                raise self.error(
                    dotted, "unknown key", f"remove it or use one of: {', '.join(sorted(allowed))}"
                )

    def table(self, data: Mapping[str, Any], name: str, *, prefix: str = "") -> Mapping[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            dotted = f"{prefix}.{name}" if prefix else name
            raise self.error(
                dotted,
                f"must be a table, not {type(value).__name__}",
                f"write it as a [{dotted}] section",
            )
        return value

    def string(
        self, table: Mapping[str, Any], key: str, name: str, *, default: str | None = None
    ) -> str:
        value = table.get(name, default)
        if value is None:
            raise self.error(f"{key}.{name}", "is missing", f'add {name} = "..."')
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"{key}.{name}", "must be a non-empty string", f'write {name} = "..."')
        return value.strip()

    def env_name(self, table: Mapping[str, Any], key: str, name: str, *, default: str) -> str:
        value = self.string(table, key, name, default=default)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) or _looks_like_a_token(value):
            raise self.error(
                f"{key}.{name}",
                "must be the NAME of an environment variable, not the secret itself",
                f'write {name} = "{default}" and export {default} in the environment',
            )
        return value

    def option(
        self, table: Mapping[str, Any], key: str, name: str, default: str | list[str]
    ) -> str | tuple[str, ...]:
        if not isinstance(default, list):
            return self.string(table, key, name, default=default)
        values = self.string_list(table, key, name) if name in table else default
        if not values:
            raise self.error(
                f"{key}.{name}", "must not be empty", f"write {name} = {json.dumps(default)}"
            )
        return tuple(values)

    def string_list(
        self, table: Mapping[str, Any], key: str, name: str, *, example: str = '"word", "#hashtag"'
    ) -> list[str]:
        value = table.get(name, [])
        ok = isinstance(value, list) and all(isinstance(s, str) and s.strip() for s in value)
        if not ok:
            raise self.error(
                f"{key}.{name}",
                "must be a list of non-empty strings",
                f"write {name} = [{example}]",
            )
        return [s.strip() for s in value]

    def integer(
        self, table: Mapping[str, Any], key: str, name: str, default: int, low: int, high: int
    ) -> int:
        value = table.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(
                f"{key}.{name}",
                f"must be a whole number from {low} to {high}, not {value!r}",
                f"write {name} = {default}",
            )
        return value

    def boolean(self, table: Mapping[str, Any], key: str, name: str, default: bool) -> bool:
        value = table.get(name, default)
        if not isinstance(value, bool):
            raise self.error(
                f"{key}.{name}",
                f"must be true or false, not {value!r}",
                f"write {name} = {str(default).lower()}",
            )
        return value

    def number(
        self, table: Mapping[str, Any], key: str, name: str, default: float, low: float, high: float
    ) -> float:
        value = table.get(name, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise self.error(
                f"{key}.{name}",
                f"must be a number from {low:g} to {high:g}, not {value!r}",
                f"write {name} = {default:g}",
            )
        return float(value)


def _looks_like_a_token(name: str) -> bool:
    """A variable name that reads like a pasted token: very long, or upper and lower case mixed
    with digits (``PastedToken0123abc``), which no one names a variable.
    Such a value is never repeated in an error."""
    mixed = any(c.islower() for c in name) and any(c.isupper() for c in name)
    return len(name) > 64 or (mixed and any(c.isdigit() for c in name))
