"""curl's -F syntax, parsed without I/O: ``name=value`` or ``name=@path[;type=MIME][;filename=N]``.

Values may be double-quoted to carry ``;`` or ``,`` (``name="a;b"``), with backslash escaping
``"`` and ``\\`` inside the quotes, as curl does.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class FormArg:
    """One -F argument: a text field, or a file part when ``path`` is set."""

    name: str
    value: str = ""
    path: str | None = None
    content_type: str | None = None
    filename: str | None = None


def _split_params(text: str) -> list[str]:
    """Split on ``;`` outside double quotes, unquoting quoted pieces."""
    pieces: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            pieces.append("".join(current))
            current = []
        else:
            current.append(ch)
    if quoted:
        raise UsageError(f"unterminated quote in -F {text!r}")
    pieces.append("".join(current))
    return pieces


def parse_form_arg(arg: str) -> FormArg:
    """Parse one -F argument; a UsageError says what is wrong with it."""
    name, eq, rest = arg.partition("=")
    if not eq or not name:
        raise UsageError(f"bad -F {arg!r}: expected name=value or name=@file")
    if not rest.startswith("@"):
        return FormArg(name=name, value=rest)
    first, *params = _split_params(rest[1:])
    if not first:
        raise UsageError(f"bad -F {arg!r}: no file name after @")
    options: dict[str, str] = {}
    for param in params:
        key, peq, value = param.partition("=")
        key = key.strip().lower()
        if not peq or key not in ("type", "filename"):
            raise UsageError(f"bad -F {arg!r}: unknown option {param!r} (type= or filename=)")
        options[key] = value
    return FormArg(
        name=name, path=first, content_type=options.get("type"), filename=options.get("filename")
    )
