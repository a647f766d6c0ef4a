"""Reading TOML files (configs, campaign specs) with errors that name the file."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """The parsed document of ``path``; ``what`` names it in errors ("config file", ...)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ValueError(f"reading a {what} needs Python >= 3.11 or `pip install tomli`") from None
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ValueError(f"{what} {str(path)!r} does not exist") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{what} {str(path)!r}: {e}") from None
