"""Generate docs/api.md, the API reference, from the package's docstrings (stdlib ``inspect`` only).

    python docs/make_api.py           # (re)write docs/api.md
    python docs/make_api.py --check   # exit 1 if docs/api.md differs from a fresh generation

The public API is ``multiscale.__all__`` (including the surrogate names that ``multiscale``
exposes lazily) and the ``__all__`` of the public subpackages in ``SUBPACKAGES``. Each object gets
its signature and full docstring; classes also get their public methods and properties (those
defined in the package, inherited ones included), and enums their members. Names that the top
level re-exports from a documented subpackage point to the subpackage's entry instead of being
repeated. The output is deterministic: names are sorted and memory addresses and file paths are
removed from signatures.
"""
from __future__ import annotations

import argparse
import enum
import functools
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "api.md"

TOP = "multiscale"
SUBPACKAGES = (
    "multiscale.averaging",
    "multiscale.campaign",
    "multiscale.export",
    "multiscale.io",
    "multiscale.models",
    "multiscale.surrogate",
    "multiscale.validate",
)


@functools.cache
def _import(name: str):
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import importlib

    return importlib.import_module(name)


def _clean(text: str) -> str:
    """Remove what would make the output machine-dependent: addresses and absolute paths."""
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", text)
    text = text.replace(str(ROOT), "<repo>")
    text = re.sub(r"'/[^']*/multiscale/", "'<package>/", text)
    return text


def _signature(obj, name: str) -> str | None:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    return _clean(f"{name}{sig}")


def _doc(obj) -> str:
    """The object's own docstring (never the one inherited from a builtin base such as object)."""
    doc = obj.__doc__ if isinstance(obj, (type, property, functools.cached_property)) or callable(obj) else None
    if isinstance(obj, property):
        doc = obj.__doc__
    if isinstance(obj, type) and "__doc__" not in obj.__dict__:
        doc = None
    if isinstance(doc, str):
        return _clean(inspect.cleandoc(doc)).strip()
    return ""


def _kind(obj) -> str:
    if isinstance(obj, type):
        if issubclass(obj, BaseException):
            return "exception"
        if issubclass(obj, enum.Enum):
            return "enum"
        return "class"
    if inspect.isroutine(obj) or callable(obj):
        return "function"
    return "data"


def _own_classes(cls: type) -> list[type]:
    """The classes in cls's MRO whose members are documented: those defined in the package."""
    return [c for c in cls.__mro__ if c.__module__.split(".")[0] == TOP]


def class_members(cls: type) -> list[tuple[str, str, object]]:
    """Public (name, kind, raw attribute) of a class: methods, class/static methods, properties."""
    out: dict[str, tuple[str, object]] = {}
    for c in reversed(_own_classes(cls)):
        for name, raw in vars(c).items():
            if name.startswith("_"):
                continue
            if isinstance(raw, (property, functools.cached_property)):
                out[name] = ("property", raw)
            elif isinstance(raw, staticmethod):
                out[name] = ("staticmethod", raw.__func__)
            elif isinstance(raw, classmethod):
                out[name] = ("classmethod", raw.__func__)
            elif inspect.isfunction(raw):
                out[name] = ("method", raw)
            else:
                out.pop(name, None)  # data (dataclass defaults, enum members): documented elsewhere
    return [(name, kind, raw) for name, (kind, raw) in sorted(out.items())]


def public_objects() -> list[tuple[str, str, object]]:
    """(module, name, object) for every public object, modules in document order, names sorted.
    Also the members of classes, as (module, "Class.member", raw attribute). Names that the top
    level re-exports from a subpackage appear once, under the subpackage."""
    rows = []
    for mod_name in (TOP, *SUBPACKAGES):
        mod = _import(mod_name)
        for name in sorted(mod.__all__):
            obj = getattr(mod, name)
            if mod_name == TOP and _kind(obj) != "data" and _home(obj):
                continue
            rows.append((mod_name, name, obj))
            if isinstance(obj, type):
                for member, _kind_, raw in class_members(obj):
                    rows.append((mod_name, f"{name}.{member}", raw))
    return rows


def _anchor(qualname: str) -> str:
    return qualname.replace(".", "-").replace("_", "-").lower()


def _fence(text: str, lang: str = "text") -> list[str]:
    ticks = "````" if "```" in text else "```"
    return [f"{ticks}{lang}", text, ticks, ""]


def _home(obj) -> str | None:
    """The documented subpackage that exports this very object, if any."""
    for sub in SUBPACKAGES:
        mod = _import(sub)
        for name in mod.__all__:
            if getattr(mod, name) is obj:
                return f"{sub}.{name}"
    return None


def _document(lines: list[str], mod_name: str, name: str, obj) -> None:
    qual = f"{mod_name}.{name}"
    kind = _kind(obj)
    lines += [f'<a id="{_anchor(qual)}"></a>', "", f"### `{qual}` ({kind})", ""]
    if kind == "data":
        lines += [f"Type `{type(obj).__name__}`.", ""]
        return
    sig = _signature(obj, name)
    if sig is not None and kind not in ("enum",):
        lines += _fence(sig, "python")
    doc = _doc(obj)
    lines += _fence(doc) if doc else ["*(no docstring)*", ""]
    if kind == "enum":
        lines += ["Members: " + ", ".join(f"`{m.name}`" for m in obj) + ".", ""]
    if isinstance(obj, type):
        for member, mkind, raw in class_members(obj):
            lines += [f"#### `{name}.{member}` ({mkind})", ""]
            if mkind == "property":
                getter = raw.fget if isinstance(raw, property) else raw.func
                ann = getattr(getter, "__annotations__", {}).get("return")
                if ann is not None:
                    lines += [f"Type `{ann if isinstance(ann, str) else getattr(ann, '__name__', ann)}`.", ""]
            else:
                sig = _signature(raw, member)
                if sig is not None:
                    lines += _fence(sig, "python")
            doc = _doc(raw)
            lines += _fence(doc) if doc else ["*(no docstring)*", ""]


def generate() -> str:
    lines = [
        "# API reference",
        "",
        "<!-- Generated by docs/make_api.py from the docstrings; do not edit by hand. -->",
        "",
        "The public API of `multiscale`: the names in `multiscale.__all__` and in the `__all__` of",
        "its public subpackages. Names that `multiscale` re-exports from a subpackage are listed",
        "under `multiscale` with a link to their entry in the subpackage. The user guide is",
        "[guide.md](guide.md); the benchmark problems of the catalogue, their exact answers and the",
        "functions that compute them (`multiscale.exact`, `multiscale.validate`) are in",
        "[reference_problems.md](reference_problems.md).",
        "",
        "## Contents",
        "",
    ]
    body: list[str] = []
    for mod_name in (TOP, *SUBPACKAGES):
        mod = _import(mod_name)
        names = sorted(mod.__all__)
        lines.append(f"- [`{mod_name}`](#{_anchor(mod_name)})")
        body += [f'<a id="{_anchor(mod_name)}"></a>', "", f"## `{mod_name}`", ""]
        mdoc = _clean(inspect.cleandoc(mod.__doc__ or "")).strip()
        if mdoc:
            body += _fence(mdoc)
        for name in names:
            obj = getattr(mod, name)
            home = _home(obj) if mod_name == TOP and _kind(obj) != "data" else None
            target = home or f"{mod_name}.{name}"
            lines.append(f"  - [`{name}`](#{_anchor(target)})")
            if home is None:
                _document(body, mod_name, name, obj)
        if mod_name == TOP:
            reexported = [(n, _home(getattr(mod, n))) for n in names if _kind(getattr(mod, n)) != "data"]
            reexported = [(n, h) for n, h in reexported if h]
            if reexported:
                body += ["Re-exported from subpackages:", ""]
                body += [f"- `{n}`: see [`{h}`](#{_anchor(h)})" for n, h in reexported]
                body.append("")
    lines.append("")
    return "\n".join(lines + body).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is stale")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run `python docs/make_api.py`", file=sys.stderr)
            return 1
        print(f"{OUT.relative_to(ROOT)} is up to date")
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
