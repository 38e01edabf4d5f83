"""TOML reading for config files, the models table and training recipes: one place for
the Python 3.10 fallback (``tomli``) and for turning a bad file into one ConfigError line."""

from __future__ import annotations

from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .errors import ConfigError


def read_toml(path: str | Path) -> dict:
    """The parsed file; an unreadable or invalid file is a ConfigError naming it."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None


def toml_value(text: str):
    """One TOML value written as text (``1e-5``, ``"x"``, ``[1, 2]``); ValueError if it is not one."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError as e:
        raise ValueError(str(e)) from None


__all__ = ["read_toml", "toml_value", "tomllib"]
