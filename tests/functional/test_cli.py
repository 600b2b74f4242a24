"""The command line: check-config exit codes and messages, run refusing a broken file, --version,
gen-key, TOKENGATE_CONFIG, exit codes (0/1/2/64) and help texts."""

from __future__ import annotations

import argparse
import base64
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway import __version__
from gateway.cli import LOG_LEVELS, _parser, main

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    **os.environ,
    "TOKENGATE_CLIENT_SECRET": "s",
    "TOKENGATE_SESSION_KEY": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA",
}


def tokengate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        env=env or ENV,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.parametrize("name", ["gateway.yaml", "public-api.yaml", "bearer-api.yaml", "browser-app.yaml"])
def test_check_config_valid(name: str) -> None:
    result = tokengate("check-config", f"config/{name}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"config/{name}: OK")


def test_check_config_reports_every_problem() -> None:
    result = tokengate("check-config", "tests/data/broken/unknown-keys.yaml")
    assert result.returncode == 2
    assert result.stderr == (
        "tests/data/broken/unknown-keys.yaml: 2 problems\n"
        "  server.lisen_backlog (line 3): unknown key\n"
        "  routes[0].auth.scope (line 8): unknown key (did you mean 'scopes'?)\n"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["unknown-keys.yaml", "types-and-refs.yaml", "cross-field.yaml"])
def test_broken_files_exit_2_without_traceback(name: str) -> None:
    result = tokengate("check-config", f"tests/data/broken/{name}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert all(line.startswith("  ") for line in result.stderr.splitlines()[1:])


def test_missing_file_and_invalid_yaml(tmp_path: Path) -> None:
    result = tokengate("check-config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "cannot read the file" in result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes: [\n")
    result = tokengate("check-config", str(bad))
    assert result.returncode == 2
    assert "invalid YAML" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_refuses_a_broken_file() -> None:
    result = tokengate("run", "--config", "tests/data/broken/cross-field.yaml")
    assert result.returncode == 2
    assert "unknown provider 'mian'" in result.stderr


def test_unset_secret_is_named() -> None:
    env = {k: v for k, v in ENV.items() if k != "TOKENGATE_CLIENT_SECRET"}
    result = tokengate("check-config", "config/bearer-api.yaml", env=env)
    assert result.returncode == 2
    assert (
        "providers.main.client_secret (line 9): environment variable TOKENGATE_CLIENT_SECRET is not set"
        in result.stderr
    )


# -- issue 13: --version, gen-key, TOKENGATE_CONFIG, exit codes, help texts ----------------------------


def test_version() -> None:
    result = tokengate("--version")
    assert result.returncode == 0
    assert result.stdout == f"tokengate {__version__}\n"
    assert __version__ == importlib.metadata.version("tokengate")


def test_gen_key_makes_a_valid_session_key(tmp_path: Path) -> None:
    first, second = tokengate("gen-key"), tokengate("gen-key")
    assert first.returncode == second.returncode == 0
    key = first.stdout.strip()
    assert key != second.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", key)
    assert len(base64.urlsafe_b64decode(key + "=")) == 32
    # the gateway accepts it as sessions.encryption_key
    result = tokengate("check-config", "config/browser-app.yaml", env={**ENV, "TOKENGATE_SESSION_KEY": key})
    assert result.returncode == 0, result.stderr


def test_gen_key_signing_makes_an_ec_p256_key() -> None:
    result = tokengate("gen-key", "--signing")
    assert result.returncode == 0
    assert result.stdout.startswith("-----BEGIN PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(result.stdout.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"


def test_tokengate_config_names_the_file_when_config_is_absent() -> None:
    env = {**ENV, "TOKENGATE_CONFIG": "config/public-api.yaml"}
    result = tokengate("check-config", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config/public-api.yaml: OK")
    # --config wins over the variable
    result = tokengate("check-config", "--config", "config/bearer-api.yaml", env=env)
    assert result.stdout.startswith("config/bearer-api.yaml: OK")
    # and `run` (also without a command) reads it too: a broken file is refused with exit 2
    broken = {**ENV, "TOKENGATE_CONFIG": "tests/data/broken/cross-field.yaml"}
    for args in (("run",), ()):
        result = tokengate(*args, env=broken)
        assert result.returncode == 2
        assert "unknown provider 'mian'" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("frobnicate",),
        ("--no-such-flag",),
        ("run", "--workers", "3"),
        ("run", "--log-level", "loud"),
        ("explain",),
        ("explain", "GET", "/", "--claims", "{}", "--token", "t"),
        ("gen-key", "--size", "16"),
    ],
)
def test_usage_errors_exit_64(args: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(list(args))
    assert stopped.value.code == 64
    assert "usage: tokengate" in capsys.readouterr().err


def test_explain_exit_codes() -> None:
    allowed = tokengate("explain", "--config", "config/public-api.yaml", "GET", "/docs/a")
    assert allowed.returncode == 0, allowed.stderr
    denied = tokengate(
        "explain", "--config", "config/bearer-api.yaml", "GET", "/api/x", "--claims", '{"sub": "a"}'
    )
    assert denied.returncode == 1, denied.stdout + denied.stderr
    broken = tokengate("explain", "--config", "tests/data/broken/cross-field.yaml", "GET", "/")
    assert broken.returncode == 2


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_subcommand_has_real_help() -> None:
    commands = _subcommands()
    assert set(commands) == {"run", "check-config", "explain", "gen-key"}
    for name, parser in commands.items():
        assert len(parser.description or "") > 40, name
        for action in parser._actions:
            assert action.help, f"{name} {action.dest}"
            assert action.help != argparse.SUPPRESS, f"{name} {action.dest}"
        text = parser.format_help()
        assert "Exit codes: 0 ok, 1 refused (explain), 2 config error, 64 usage error." in text
        assert "TOKENGATE_CONFIG" in text


def test_help_exits_0() -> None:
    for args in (("--help",), ("run", "--help"), ("gen-key", "--help")):
        result = tokengate(*args)
        assert result.returncode == 0
        assert result.stdout.startswith("usage: tokengate")


def test_the_charts_extra_args_are_flags_run_accepts() -> None:
    """The Helm chart appends extraArgs to `run --config ...`: every value its schema admits must parse."""
    chart = ROOT / "helm" / "tokengate"
    schema = json.loads((chart / "values.schema.json").read_text())
    pattern = schema["properties"]["extraArgs"]["items"]["pattern"]
    values = yaml.safe_load((chart / "values.yaml").read_text())
    admitted = [f"--log-level={level}" for level in LOG_LEVELS]
    for arg in [*admitted, *values["extraArgs"]]:
        assert re.fullmatch(pattern, arg), arg
        parsed = _parser().parse_args(["run", "--config", "/etc/tokengate/gateway.yaml", arg])
        assert parsed.log_level == arg.partition("=")[2]
    for refused in ("--workers=2", "--log-level=loud", "--config=/other.yaml", "serve"):
        assert not re.fullmatch(pattern, refused), refused
