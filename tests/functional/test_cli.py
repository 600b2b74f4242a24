"""The command line: check-config exit codes and messages, and run refusing a broken file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
