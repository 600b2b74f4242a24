"""Fuzzing the config loader (issue 9, defence 3): any text, any YAML structure and mutations of the
shipped configs give a config or a ConfigError with paths, never another exception; `tokengate
check-config` exits 0 or 2 without a traceback; a config the loader accepts also compiles."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.errors import ConfigError, ConfigProblem
from gateway.runtime import build_runtime

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    "TOKENGATE_CLIENT_SECRET": "s",
    "TOKENGATE_SESSION_KEY": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA",
    "TOKENGATE_SIGNING_KEY": "x",
}
SEEDS = {p.name: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "config").glob("*.yaml"))}


def judge(text: str) -> None:
    """The property: a validated config that compiles, or a ConfigError whose every problem is text."""
    try:
        cfg = parse_config(text, env=ENV)
    except ConfigError as exc:
        problems: tuple[ConfigProblem, ...] | None = exc.problems
    else:
        problems = None
    if problems is not None:
        assert problems
        for problem in problems:
            assert str(problem)
            assert "Traceback" not in str(problem)
            assert problem.line is None or problem.line >= 1
        return
    # Accepted: it must also compile (the runtime is what `run` builds first; no I/O happens here).
    build_runtime(cfg, http=None)  # type: ignore[arg-type]  # compiling only: no request is ever made


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["30s", "0s", "-1s", "1h30m", "${X}", "${X:-y}", "${", "http://[::1", "http://x:0", "/"]),
    st.sampled_from(["public", "bearer", "session", "bearer_or_session", "jwt", "introspection", "*"]),
)
structures = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.one_of(st.text(max_size=10), st.sampled_from(["server", "providers", "sessions", "routes"])),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(st.text(max_size=300))
@example("a: &x [*x]")
@example("server: &x {a: *x}")
@example("x: " + "[" * 600 + "]" * 600)
@example("--- {}\n--- {}\n")
@example("server: !!python/object/apply:os.system [id]")
@example("\ufeffserver: {}")
@example("server: {trusted_proxies: [no, 0]}")
@example("routes: [{name: a, match: {path_prefix: /}, upstream: 'http://[::1', auth: {mode: public}}]")
def test_fuzz_config_any_text(text: str) -> None:
    """Hostile config text (recursive anchors, deep nesting, tags, junk): only ConfigError, never a crash."""
    judge(text)


@given(structures)
def test_fuzz_config_any_structure(data: Any) -> None:
    """Random YAML structures: the loader reports problems by path, never raises anything else."""
    judge(yaml.safe_dump(data))


def _paths(node: Any, loc: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [loc]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*loc, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*loc, i))
    return out


def _mutate(doc: Any, loc: tuple[Any, ...], op: str, value: Any) -> Any:
    if not loc:
        return value if op == "replace" else doc
    parent = doc
    for part in loc[:-1]:
        parent = parent[part]
    last = loc[-1]
    if op == "replace":
        parent[last] = value
    elif op == "delete":
        del parent[last]
    elif op == "wrap":
        parent[last] = [parent[last]]
    elif op == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))
    elif op == "unknown_key" and isinstance(parent, dict):
        parent[str(value)] = value
    return doc


@given(st.sampled_from(sorted(SEEDS)), st.data())
def test_fuzz_config_mutated_shipped_configs(seed: str, data: st.DataObject) -> None:
    """One to three wrong values in a real config: each is reported by path, or the result compiles."""
    doc = copy.deepcopy(SEEDS[seed])
    for _ in range(data.draw(st.integers(1, 3))):
        loc = data.draw(st.sampled_from(_paths(doc)))
        op = data.draw(st.sampled_from(["replace", "delete", "wrap", "duplicate", "unknown_key"]))
        doc = _mutate(doc, loc, op, data.draw(structures))
    judge(yaml.safe_dump(doc))


def test_every_shipped_config_is_accepted() -> None:
    """The seeds of the mutation fuzzer are valid configs (so mutations start from something real)."""
    for name, doc in SEEDS.items():
        cfg = parse_config(yaml.safe_dump(doc), env=ENV)
        assert cfg.routes, name


CLI_SAMPLES = [
    "a: &x [*x]\n",
    "x: " + "[" * 600 + "]" * 600 + "\n",
    "server: {listen: [1, 2]}\nroutes: 7\n",
    "\x00\x01 not yaml: [",
    "routes: [{name: a, match: {path_prefix: /}, upstream: 'http://[::1', auth: {mode: public}}]\n",
    "server: !!python/object/apply:os.system [id]\n",
]


@settings(max_examples=4)
@given(structures)
def test_fuzz_config_cli_random_structures(tmp_path_factory: pytest.TempPathFactory, data: Any) -> None:
    """check-config through the real CLI on random documents: exit 0 or 2, never a traceback."""
    path = tmp_path_factory.mktemp("cfg") / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    run_check_config(path)


@pytest.mark.parametrize("text", CLI_SAMPLES)
def test_check_config_cli_on_hostile_files(tmp_path: Path, text: str) -> None:
    """check-config on hostile files (recursive anchors, deep nesting, NUL, tags): exit 2, no traceback."""
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    assert run_check_config(path) == 2


def run_check_config(path: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", **ENV},
    )
    assert done.returncode in (0, 2), done.stderr
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done.returncode
