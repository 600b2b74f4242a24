"""docs/configuration.md, generated: the option tables from the config schema (pydantic fields: key,
type, default, ``Field(description=...)``; type names from ``TypeName`` metadata), the cross-field rules
from ``gateway.config.rulebook``, and the prose around them from ``template.md`` and ``notes.md`` beside
this file. The output is deterministic, so a test can compare it with the file.
"""

from __future__ import annotations

import re
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from gateway.config import schema
from gateway.config.loader import parse_config
from gateway.config.rulebook import RULES, Rule
from gateway.config.values import TypeName
from gateway.errors import ConfigError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def example_path() -> Path:
    """config/gateway.yaml in the source tree: the commented example included verbatim at the end."""
    return ROOT / "config" / "gateway.yaml"


Noun = tuple[str, str]  # (singular, plural), so "list of URLs" reads right

_SCALARS: dict[object, Noun] = {
    str: ("string", "strings"),
    int: ("int", "ints"),
    float: ("number", "numbers"),
    bool: ("bool", "bools"),
    SecretStr: ("secret string", "secret strings"),
    timedelta: ("duration", "durations"),
}


@dataclass(frozen=True)
class Section:
    """One table: the options of one model, found at ``path`` in the YAML file."""

    path: str  # "" for the top level, then "server", "providers.<name>", "routes[].auth" ...
    description: str
    model: type[BaseModel]


def _is_model(tp: object) -> typing.TypeGuard[type[BaseModel]]:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _strip_annotated(tp: object) -> tuple[object, list[object]]:
    metadata: list[object] = []
    while get_origin(tp) is typing.Annotated:
        tp, *extra = get_args(tp)
        metadata.extend(extra)
    return tp, metadata


def _without_none(tp: object) -> object:
    if get_origin(tp) in (typing.Union, types.UnionType):
        members = [m for m in get_args(tp) if m is not type(None)]
        if len(members) == 1:
            return members[0]
    return tp


def _nested(field: FieldInfo) -> tuple[str, type[BaseModel]] | None:
    """How a field nests a model: ``("", M)`` directly, ``(".<name>", M)`` as a map of them, ``("[]", M)``
    as a list of them; None for a plain option."""
    tp, _ = _strip_annotated(_without_none(field.annotation))
    if _is_model(tp):
        return "", tp
    origin, args = get_origin(tp), get_args(tp)
    if origin is dict and _is_model(args[1]):
        return ".<name>", args[1]
    if origin is list and _is_model(args[0]):
        return "[]", args[0]
    return None


def sections(
    model: type[BaseModel] = schema.GatewayConfig, path: str = "", description: str = ""
) -> Iterator[Section]:
    """Every model reachable from ``model``, depth first in field order (the order of the file)."""
    yield Section(path, description, model)
    for name, field in model.model_fields.items():
        nested = _nested(field)
        if nested is None:
            continue
        suffix, child = nested
        key = field.alias or name
        yield from sections(
            child, f"{path}.{key}{suffix}" if path else f"{key}{suffix}", field.description or ""
        )


def _constraints(metadata: Sequence[object]) -> list[str]:
    # Field(...) inside Annotated arrives as a FieldInfo carrying its own metadata (the key patterns).
    metadata = [m for item in metadata for m in (item.metadata if isinstance(item, FieldInfo) else [item])]
    out: list[str] = []
    ge = next((m.ge for m in metadata if hasattr(m, "ge")), None)
    le = next((m.le for m in metadata if hasattr(m, "le")), None)
    if ge is not None and le is not None:
        out.append(f"{ge}-{le}")
    elif ge is not None:
        out.append(f">= {ge}")
    elif le is not None:
        out.append(f"<= {le}")
    for m in metadata:
        min_length = getattr(m, "min_length", None)
        if min_length is not None:
            out.append(f"at least {min_length}" if min_length > 1 else "not empty")
        pattern = getattr(m, "pattern", None)
        if pattern is not None:
            out.append(f"matching `{pattern}`")
    return out


def noun(tp: object, metadata: Sequence[object] = ()) -> Noun:
    """A human-readable name for a field type: "duration", "list of strings", "map of string to URL"."""
    tp, inner = _strip_annotated(tp)
    metadata = [*inner, *metadata]
    # A value type names itself (gateway.config.values: Duration, HttpUrl, Listen ...).
    for m in metadata:
        if isinstance(m, TypeName):
            return m.singular, m.plural
    origin, args = get_origin(tp), get_args(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            return noun(members[0], metadata)
        nouns = [noun(a) for a in members]
        return (
            ", ".join(n[0] for n in nouns[:-1]) + " or " + nouns[-1][0],
            ", ".join(n[1] for n in nouns[:-1]) + " or " + nouns[-1][1],
        )
    if origin is typing.Literal:
        choices = " or ".join(f"`{a}`" for a in args)
        return choices, choices
    if origin is list:
        item = noun(args[0])[1]
        return f"list of {item}", f"lists of {item}"
    if origin is dict:
        key, value = noun(args[0])[0], noun(args[1])[0]
        return f"map of {key} to {value}", f"maps of {key} to {value}"
    if tp in _SCALARS:
        return _SCALARS[tp]
    if _is_model(tp):
        return "section", "sections"
    raise TypeError(
        f"no readable name for the config type {tp!r}: give it a TypeName (gateway/config/values.py)"
    )


def type_cell(field: FieldInfo, child_path: str | None) -> str:
    tp = _without_none(field.annotation)
    bare, inner = _strip_annotated(tp)
    if child_path is not None:
        origin = get_origin(bare)
        if origin is dict:
            key_meta = _strip_annotated(get_args(bare)[0])[1]
            where = f"map of name to `{child_path}` sections"
            extra = _constraints(key_meta)
            return where + (f" (names {', '.join(extra)})" if extra else "")
        if origin is list:
            extra = _constraints(field.metadata)
            return f"list of `{child_path}` entries" + (f", {', '.join(extra)}" if extra else "")
        return f"section `{child_path}`"
    text = noun(tp, field.metadata)[0]
    extra = _constraints([*inner, *field.metadata])
    return text + (f", {', '.join(extra)}" if extra else "")


def format_duration(value: timedelta) -> str:
    """The largest unit that states the value exactly: 500ms, 30s, 15m, 12h, 1d."""
    ms = round(value.total_seconds() * 1000)
    if not ms:
        return "0s"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _yaml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_scalar(v)}" for k, v in value.items()) + "}"
    return str(value)


def default_cell(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "see below"
    if value is None:
        return "not set"
    return f"`{_yaml_scalar(value)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def table(section: Section) -> list[str]:
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for name, field in section.model.model_fields.items():
        key = field.alias or name
        nested = _nested(field)
        child = None
        if nested is not None:
            child = f"{section.path}.{key}{nested[0]}" if section.path else f"{key}{nested[0]}"
        rows.append(
            f"| `{key}` | {_cell(type_cell(field, child))} | {default_cell(field)} "
            f"| {_cell(field.description or '')} |"
        )
    return rows


def _markdown_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def rules_table(rules: Sequence[Rule] = RULES) -> str:
    """The "Rules across fields" table: every rule the reference lists, in the rule book's order."""
    rows = [(", ".join(f"`{p}`" for p in r.paths), r.text) for r in rules if r.text is not None]
    return _markdown_table(("path", "rule"), rows)


_NOTE = re.compile(r"^<!-- notes: (?P<path>.+?) -->\n", re.M)


def notes(text: str) -> dict[str, str]:
    """notes.md split at its ``<!-- notes: PATH -->`` lines: section path -> Markdown under its table."""
    marks = list(_NOTE.finditer(text))
    out: dict[str, str] = {}
    for m, after in zip(marks, [*marks[1:], None], strict=True):
        end = after.start() if after is not None else len(text)
        out[m.group("path")] = text[m.end() : end].rstrip("\n") + "\n"
    return out


def _broken_example() -> tuple[str, str]:
    text = (
        "server:\n"
        '  listen: "0.0.0.0:8080"\n'
        "  upstream_timout: 30s\n"
        "  shutdown_grace: 25\n"
        "providers:\n"
        "  main:\n"
        '    issuer: "idp.example.com"\n'
        "    client_id: tokengate\n"
        '    client_secret: "${TOKENGATE_CLIENT_SECRET}"'
    )
    try:
        parse_config(text, "gateway.yaml", env={})
    except ConfigError as exc:
        count = len(exc.problems)
        lines = [f"{exc.source}: {count} problem{'s' if count != 1 else ''}"]
        lines += [f"  {problem}" for problem in exc.problems]
        return text, "\n".join(lines)
    raise AssertionError("the broken example validated")  # pragma: no cover


def options(section_notes: dict[str, str]) -> str:
    """Every section: its heading, description, table and notes, in the file's order."""
    out: list[str] = []
    all_sections = list(sections())
    unknown = set(section_notes).difference(s.path for s in all_sections)
    if unknown:
        raise ValueError(f"notes for sections that do not exist: {sorted(unknown)}")
    for section in all_sections:
        title = f"`{section.path}`" if section.path else "Top level"
        out.append(f"### {title}\n")
        if section.description:
            out.append(section.description + "\n")
        out.append("\n".join(table(section)) + "\n")
        if section.path in section_notes:
            out.append(section_notes[section.path])
    return "\n".join(out)


def render(example: str) -> str:
    """The whole of docs/configuration.md; ``example`` is config/gateway.yaml's text."""
    broken, errors = _broken_example()
    filled = {
        "broken": broken,
        "errors": errors,
        "options": options(notes((HERE / "notes.md").read_text(encoding="utf-8"))),
        "rules": rules_table(),
        "example": example.rstrip("\n"),
    }
    template = (HERE / "template.md").read_text(encoding="utf-8")
    missing = set(filled).difference(re.findall(r"\{\{(\w+)\}\}", template))
    if missing:
        raise ValueError(f"template.md has no place for {sorted(missing)}")
    return re.sub(r"\{\{(\w+)\}\}", lambda m: filled[m.group(1)], template)


def main() -> int:
    sys.stdout.write(render(example_path().read_text(encoding="utf-8")))
    return 0
