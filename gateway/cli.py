"""Command line: ``run``, ``check-config``, ``explain``, ``gen-key`` and ``--version`` (argument handling
only). Exit codes (DESIGN §8): 0 ok, 1 a refusal (``explain`` deny), 2 a config error, 64 a usage error.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from pathlib import Path
from typing import NoReturn

from gateway import __version__
from gateway.config import load_config
from gateway.config.schema import GatewayConfig
from gateway.errors import ConfigError

DEFAULT_CONFIG = "config/gateway.yaml"
CONFIG_ENV = "TOKENGATE_CONFIG"
EXIT_REFUSED, EXIT_CONFIG, EXIT_USAGE = 1, 2, 64  # 64: EX_USAGE from sysexits.h
LOG_LEVELS = ("debug", "info", "warning", "error")

_EPILOG = f"""\
The config file is --config, else ${CONFIG_ENV}, else {DEFAULT_CONFIG}.
Exit codes: 0 ok, 1 refused (explain), 2 config error, 64 usage error."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 64 (EX_USAGE) instead of 2, which means a config error here."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _print_config_error(exc: ConfigError) -> None:
    where = exc.source or "config"
    count = len(exc.problems)
    print(f"{where}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def config_path(*given: str | None) -> str:
    """The first path given on the command line, else $TOKENGATE_CONFIG, else the default."""
    for path in given:
        if path:
            return path
    return os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG


def _load(path: str) -> GatewayConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        _print_config_error(exc)
        return None


def _prepare_metrics(workers: int) -> None:
    """prometheus-client's multiprocess mode only with several workers: one worker keeps its metrics in
    memory, which is what lets the process_* and python_* collectors work. Runs before prometheus-client
    is imported (it reads PROMETHEUS_MULTIPROC_DIR at import)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if workers <= 1:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        return
    if directory:
        # Files a previous (crashed) run left there would be counted again.
        Path(directory).mkdir(parents=True, exist_ok=True)
        for stale in Path(directory).glob("*.db"):
            stale.unlink(missing_ok=True)


def _run(args: argparse.Namespace) -> int:
    path = config_path(args.run_config, args.config)
    cfg = _load(path)
    if cfg is None:
        return EXIT_CONFIG
    _prepare_metrics(cfg.server.workers)
    from gateway.server import serve, supervise  # imported late: check-config stays light

    if cfg.server.workers > 1:
        return supervise(cfg, Path(path), log_level=args.log_level)
    serve(cfg, Path(path), log_level=args.log_level)
    return 0


def _check_config(args: argparse.Namespace) -> int:
    path = config_path(args.file, args.check_config, args.config)
    cfg = _load(path)
    if cfg is None:
        return EXIT_CONFIG
    print(f"{path}: OK ({len(cfg.routes)} routes, {len(cfg.providers)} providers)")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from gateway.explain import explain, parse_claims

    try:
        claims = parse_claims(args.claims) if args.claims else None
    except ValueError as exc:
        print(f"tokengate explain: {exc}", file=sys.stderr)
        return EXIT_USAGE
    cfg = _load(config_path(args.explain_config, args.config))
    if cfg is None:
        return EXIT_CONFIG
    result = explain(cfg, args.method, args.url, claims=claims, token=args.token, dpop=args.dpop)
    print(result.render(), end="")
    return 0 if result.allowed else EXIT_REFUSED


def _gen_key(args: argparse.Namespace) -> int:
    if not args.signing:
        # sessions.encryption_key: 32 random bytes, base64url without padding (DESIGN §2).
        print(base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode())
        return 0
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    # server.signing_key: EC P-256 (ES256) for X-Tokengate-Assertion, PKCS#8 PEM.
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    sys.stdout.write(pem.decode())
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tokengate",
        description="tokengate: an OAuth 2.0 / OpenID Connect auth gateway (a reverse proxy that checks "
        "bearer tokens and runs browser logins).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tokengate {__version__}")
    parser.add_argument("--config", default=None, metavar="PATH", help="the config file (see below)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=summary,
            description=description,
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    run = command(
        "run",
        "start the gateway (the default command)",
        "Serve the public and admin listeners of a config file until SIGTERM or SIGINT (which drain "
        "in-flight requests for server.shutdown_grace). SIGHUP or a change of the file reloads it.",
    )
    run.add_argument("--config", dest="run_config", default=None, metavar="PATH", help="the config file")
    run.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=None,
        help="override server.log_level (also across reloads)",
    )
    check = command(
        "check-config",
        "validate a config file offline; exit 0 or 2",
        "Validate a config file without any network access: print OK and exit 0, or print every problem "
        "with its YAML path and exit 2.",
    )
    check.add_argument("file", nargs="?", default=None, help="the config file (or --config)")
    check.add_argument("--config", dest="check_config", default=None, metavar="PATH", help="the config file")
    why = command(
        "explain",
        "show how a request would be routed and judged; exit 0 allow, 1 deny",
        "Route a request through a config's route table and policy, as the gateway would, and print "
        "each step: the normalised path, the route, the authentication and the authorisation decision.",
    )
    why.add_argument("--config", dest="explain_config", default=None, metavar="PATH", help="the config file")
    why.add_argument("method", help="HTTP method, e.g. GET")
    why.add_argument("url", help="URL or path, e.g. https://api.example.com/api/orders?x=1")
    given = why.add_mutually_exclusive_group()
    given.add_argument(
        "--claims", help='verified claims as JSON, e.g. \'{"sub": "alice", "scope": "api:read"}\''
    )
    given.add_argument(
        "--token", help="an access token to verify against the provider (JWKS or introspection)"
    )
    why.add_argument("--dpop", metavar="PROOF", help="a DPoP proof (the DPoP header) to check (RFC 9449)")
    gen = command(
        "gen-key",
        "print a new random key",
        "Print a new sessions.encryption_key (32 random bytes, base64url), or with --signing a new "
        "EC P-256 private key (PKCS#8 PEM) for server.signing_key. Keep the output secret.",
    )
    gen.add_argument(
        "--signing", action="store_true", help="an EC P-256 signing key for identity assertions instead"
    )
    return parser


_COMMANDS = {"run": _run, "check-config": _check_config, "explain": _explain, "gen-key": _gen_key}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:  # `tokengate [--config PATH]` runs the gateway
        args.run_config, args.log_level = None, None
    return _COMMANDS[args.command or "run"](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
