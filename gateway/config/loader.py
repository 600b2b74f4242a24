"""YAML -> GatewayConfig: ${VAR} substitution and every problem reported at once with its path and line."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.config.resource import resource_problems
from gateway.config.rules import ConfigParts, cross_field_problems
from gateway.config.schema import GatewayConfig
from gateway.config.suggest import suggestion
from gateway.config.tls import tls_problems
from gateway.config.trust import trust_problems
from gateway.errors import ConfigError, ConfigProblem

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ALIASES = {"validation": "validate"}


def format_path(loc: tuple[str | int, ...]) -> str:
    """('routes', 2, 'auth', 'scopes') -> 'routes[2].auth.scopes'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + _ALIASES.get(part, part)
    return out


def _line_index(node: yaml.Node | None, loc: tuple[str | int, ...] = ()) -> dict[tuple[str | int, ...], int]:
    """Map every path in a composed YAML tree to its 1-based line."""
    lines: dict[tuple[str | int, ...], int] = {}
    if node is None:
        return lines
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*loc, key.value)
            lines[child] = key.start_mark.line + 1
            for sub, line in _line_index(value, child).items():
                lines.setdefault(sub, line)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_index(item, (*loc, i)))
    return lines


def _substitute(
    data: Any,
    env: Mapping[str, str],
    loc: tuple[str | int, ...],
    problems: list[tuple[tuple[str | int, ...], str]],
) -> Any:
    """Replace ${VAR} / ${VAR:-default} in string values (after parsing, so values can't inject YAML)."""
    if isinstance(data, dict):
        return {k: _substitute(v, env, (*loc, k), problems) for k, v in data.items()}
    if isinstance(data, list):
        return [_substitute(v, env, (*loc, i), problems) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:

        def replace(found: re.Match[str]) -> str:
            name, default = found.group(1), found.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append((loc, f"environment variable {name} is not set and has no default"))
            return ""

        return _VAR.sub(replace, data)
    return data


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        nearest = suggestion(_clean_loc(tuple(error["loc"])))
        return f"unknown key (did you mean '{nearest}'?)" if nearest else "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def _clean_loc(loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    # Union and validator wrappers add type tags such as 'function-after[...]' or 'str' to locations.
    return tuple(p for p in loc if isinstance(p, int) or ("[" not in p and p not in {"str", "int", "bool"}))


def parse_config(
    text: str, source: str = "<string>", env: Mapping[str, str] | None = None, *, check_files: bool = False
) -> GatewayConfig:
    """Parse YAML text into a validated config, or raise ConfigError with every problem found. With
    ``check_files`` (check-config, start, reload), the TLS files it names must exist and parse too."""
    try:
        return _parse_config(text, source, os.environ if env is None else env, check_files)
    except RecursionError:
        # An anchor that contains itself (`a: &x [*x]`) or nesting thousands deep: no config looks so.
        problem = ConfigProblem("", "invalid YAML: nested too deeply, or an anchor refers to itself")
        raise ConfigError([problem], source) from None


def _parse_config(text: str, source: str, env: Mapping[str, str], check_files: bool) -> GatewayConfig:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem("", f"invalid YAML: {problem}", line)], source) from None
    if not isinstance(data, dict):
        raise ConfigError(
            [ConfigProblem("", "the file must hold a YAML mapping (server, providers, ...)")], source
        )
    lines = _line_index(node)
    env_problems: list[tuple[tuple[str | int, ...], str]] = []
    data = _substitute(data, env, (), env_problems)
    problems = [ConfigProblem(format_path(loc), msg, lines.get(loc)) for loc, msg in env_problems]
    try:
        cfg = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        unset = {loc for loc, _ in env_problems}
        for error in exc.errors():
            loc = _clean_loc(tuple(error["loc"]))
            if tuple(_ALIASES.get(p, p) if isinstance(p, str) else p for p in loc) in unset:
                continue  # already reported: the variable behind this value is unset
            raw = tuple(_ALIASES.get(p, p) if isinstance(p, str) else p for p in loc)
            problems.append(ConfigProblem(format_path(loc), _message(error), lines.get(raw)))
        # The rest of the file may hold cross-field problems too: report them in the same pass.
        for problem in _rule_problems(ConfigParts.salvage(data)):
            problems.append(
                ConfigProblem(problem.path, problem.message, lines.get(_parse_path(problem.path)))
            )
        raise ConfigError(problems, source) from None
    for problem in [*_rule_problems(ConfigParts.of(cfg)), *(tls_problems(cfg) if check_files else [])]:
        problems.append(ConfigProblem(problem.path, problem.message, lines.get(_parse_path(problem.path))))
    if problems:
        raise ConfigError(problems, source)
    return cfg


def _rule_problems(parts: ConfigParts) -> list[ConfigProblem]:
    return cross_field_problems(parts) + trust_problems(parts) + resource_problems(parts)


def _parse_path(path: str) -> tuple[str | int, ...]:
    out: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(out)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read and validate a config file; a missing or unreadable file is a ConfigError too."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem("", f"cannot read the file: {exc.strerror}")], str(path)) from None
    return parse_config(text, str(path), env, check_files=True)
