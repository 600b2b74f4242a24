"""Command line: ``tokengate run``, ``tokengate check-config`` (no logic beyond argument handling)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gateway.config import load_config
from gateway.errors import ConfigError

DEFAULT_CONFIG = "config/gateway.yaml"


def _print_config_error(exc: ConfigError) -> None:
    where = exc.source or "config"
    count = len(exc.problems)
    print(f"{where}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def _reset_multiprocess_metrics() -> None:
    """Files a previous (crashed) run left in PROMETHEUS_MULTIPROC_DIR would be counted again."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for stale in Path(directory).glob("*.db"):
            stale.unlink(missing_ok=True)


def _explain(args: argparse.Namespace) -> int:
    from gateway.explain import explain, parse_claims

    path = args.explain_config or args.config or DEFAULT_CONFIG
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        _print_config_error(exc)
        return 2
    try:
        claims = parse_claims(args.claims) if args.claims else None
    except ValueError as exc:
        print(f"--claims: {exc}", file=sys.stderr)
        return 2
    result = explain(cfg, args.method, args.url, claims=claims, token=args.token)
    print(result.render(), end="")
    return 0 if result.allowed else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokengate", description="OAuth 2.0 / OIDC auth gateway")
    parser.add_argument("--config", default=None, help=f"config file (default {DEFAULT_CONFIG})")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="start the gateway (the default command)")
    run.add_argument("--config", dest="run_config", default=None)
    check = sub.add_parser("check-config", help="validate a config file offline; exit 0 or 2")
    check.add_argument("file", nargs="?", default=None)
    check.add_argument("--config", dest="check_config", default=None)
    why = sub.add_parser(
        "explain", help="show how a request would be routed and judged; exit 0 allow, 1 deny"
    )
    why.add_argument("--config", dest="explain_config", default=None)
    why.add_argument("method", help="HTTP method, e.g. GET")
    why.add_argument("url", help="URL or path, e.g. https://api.example.com/api/orders?x=1")
    given = why.add_mutually_exclusive_group()
    given.add_argument(
        "--claims", help='verified claims as JSON, e.g. \'{"sub": "alice", "scope": "api:read"}\''
    )
    given.add_argument(
        "--token", help="an access token to verify against the provider (JWKS or introspection)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "run"
    if command == "check-config":
        path = args.file or args.check_config or args.config or DEFAULT_CONFIG
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            _print_config_error(exc)
            return 2
        print(f"{path}: OK ({len(cfg.routes)} routes, {len(cfg.providers)} providers)")
        return 0
    if command == "explain":
        return _explain(args)
    path = getattr(args, "run_config", None) or args.config or DEFAULT_CONFIG
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        _print_config_error(exc)
        return 2
    _reset_multiprocess_metrics()
    from gateway.server import serve, supervise  # imported late: check-config stays light

    if cfg.server.workers > 1:
        return supervise(cfg, Path(path))
    serve(cfg, Path(path))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
