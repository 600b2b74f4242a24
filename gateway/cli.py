"""Command line: ``run``, ``check-config``, ``explain``, ``gen-key`` and ``--version`` (argument handling
only). Exit codes (DESIGN §8): 0 ok, 1 a refusal (``explain`` deny), 2 a config error, 64 a usage error.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from collections.abc import Callable
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

Command = Callable[[argparse.Namespace], int]

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


def _given(args: argparse.Namespace) -> str | None:
    # Absent unless given: the one --config action is shared by every parser (see _parser).
    config: str | None = getattr(args, "config", None)
    return config


def _load(path: str) -> GatewayConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        _print_config_error(exc)
        return None


def _prepare_metrics(workers: int) -> Path | None:
    """prometheus-client's multiprocess mode only with several workers: one worker keeps its metrics in
    memory, which is what lets the process_* and python_* collectors work. Runs before prometheus-client
    is imported (it reads PROMETHEUS_MULTIPROC_DIR at import, and the supervisor imports it before it
    forks the workers). Returns the directory made here for this run, which the supervisor removes."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if workers <= 1:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        return None
    if not directory:
        own = Path(f"/tmp/tokengate-metrics-{os.getpid()}")  # noqa: S108 - per-run, removed at exit
        own.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(own)
        return own
    # Files a previous (crashed) run left there would be counted again.
    Path(directory).mkdir(parents=True, exist_ok=True)
    for stale in Path(directory).glob("*.db"):
        stale.unlink(missing_ok=True)
    return None


def _run(args: argparse.Namespace) -> int:
    path = config_path(_given(args))
    cfg = _load(path)
    if cfg is None:
        return EXIT_CONFIG
    metrics_dir = _prepare_metrics(cfg.server.workers)
    from gateway.server import serve, supervise  # imported late: check-config stays light

    if cfg.server.workers > 1:
        return supervise(cfg, Path(path), log_level=args.log_level, metrics_dir=metrics_dir)
    serve(cfg, Path(path), log_level=args.log_level)
    return 0


def _check_config(args: argparse.Namespace) -> int:
    path = config_path(args.file, _given(args))
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
    cfg = _load(config_path(_given(args)))
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
    # --config is declared once and accepted before or after the command (after wins); SUPPRESS keeps
    # a command's parser from overwriting a value given before it with a default. The action object is
    # shared by every parser, so no set_defaults() may name `config`.
    common = _Parser(add_help=False)
    common.add_argument(
        "--config", default=argparse.SUPPRESS, metavar="PATH", help="the config file (see below)"
    )
    parser = _Parser(
        prog="tokengate",
        description="tokengate: an OAuth 2.0 / OpenID Connect auth gateway (a reverse proxy that checks "
        "bearer tokens and runs browser logins).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"tokengate {__version__}")
    # `tokengate [--config PATH]` without a command runs the gateway.
    parser.set_defaults(func=_run, log_level=None)
    sub = parser.add_subparsers(metavar="COMMAND", title="commands")

    def command(
        name: str, summary: str, description: str, func: Command, *, reads_config: bool = True
    ) -> argparse.ArgumentParser:
        cmd = sub.add_parser(
            name,
            help=summary,
            description=description,
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common] if reads_config else [],
        )
        cmd.set_defaults(func=func)
        return cmd

    run = command(
        "run",
        "start the gateway (the default command)",
        "Serve the public and admin listeners of a config file until SIGTERM or SIGINT (which drain "
        "in-flight requests for server.shutdown_grace). SIGHUP or a change of the file reloads it.",
        _run,
    )
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
        _check_config,
    )
    check.add_argument("file", nargs="?", default=None, help="the config file (or --config)")
    why = command(
        "explain",
        "show how a request would be routed and judged; exit 0 allow, 1 deny",
        "Route a request through a config's route table and policy, as the gateway would, and print "
        "each step: the normalised path, the route, the authentication and the authorisation decision.",
        _explain,
    )
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
        _gen_key,
        reads_config=False,
    )
    gen.add_argument(
        "--signing", action="store_true", help="an EC P-256 signing key for identity assertions instead"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    func: Command = args.func
    return func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
