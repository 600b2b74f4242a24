"""The documentation stays true: the generated reference is current, every full YAML example validates,
every `tokengate ...` command shown exists, and every relative link points at a file."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from gateway.cli import _parser
from gateway.config import parse_config
from gateway.errors import ConfigError
from tests.support.assertion import new_signing_pem
from tools.configref import example_path, render

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
COMMAND_DOCS = sorted({*DOCS, *(p for p in (ROOT / "SECURITY.md", ROOT / "CHANGELOG.md") if p.exists())})

# What the examples reference; the values are dummies of the right shape.
EXAMPLE_ENV = {
    "TOKENGATE_CLIENT_SECRET": "example-client-secret",
    "TOKENGATE_SESSION_KEY": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA",
    "TOKENGATE_REDIS_URL": "redis://127.0.0.1:6379/0",
    "TOKENGATE_INTROSPECTION_SECRET": "example-introspection-secret",
    "TOKENGATE_ISSUER": "https://idp.example.com",
    "TOKENGATE_SIGNING_KEY": new_signing_pem(),
}

_FENCE = re.compile(
    r"^(?P<indent> *)(?P<fence>```+|~~~+)(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
    re.M | re.S,
)
_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?(?P<target>[^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
# "tokengate <subcommand>", as typed or from a virtualenv (.venv/bin/tokengate), after any global --config.
_COMMAND = re.compile(
    r"(?:^|[\s$(]|bin/)tokengate(?:\s+--config(?:=|\s+)\S+)?\s+(?P<sub>[a-z][a-z0-9-]*)(?=\s|$|[`;|&)])"
)
_SHELL_LANGUAGES = {"", "sh", "bash", "shell", "console", "sh-session"}  # not "text": diagrams


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of every fenced code block."""
    return [(m.group("info").strip().lower(), m.group("body")) for m in _FENCE.finditer(text)]


def without_fences(text: str) -> str:
    return _FENCE.sub("", text)


def yaml_configs() -> list[tuple[str, int, str]]:
    """Fenced YAML blocks that look like a whole gateway config (a top-level ``routes:``)."""
    found = []
    for doc in DOCS:
        for n, (info, body) in enumerate(fenced_blocks(doc.read_text(encoding="utf-8"))):
            if info.split()[:1] in (["yaml"], ["yml"]) and re.search(r"^routes:", body, re.M):
                found.append((_relative(doc), n, body))
    return found


def subcommands() -> set[str]:
    parser = _parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    raise AssertionError("tokengate's parser has no subcommands")


def command_lines() -> list[tuple[str, str, str]]:
    """(document, line, subcommand) for every `tokengate ...` shown in shell blocks or inline code."""
    found = []
    for doc in COMMAND_DOCS:
        text = doc.read_text(encoding="utf-8")
        snippets = [
            body for info, body in fenced_blocks(text) if (info.split() or [""])[0] in _SHELL_LANGUAGES
        ]
        snippets += _INLINE_CODE.findall(without_fences(text))
        for snippet in snippets:
            for line in snippet.splitlines():
                for m in _COMMAND.finditer(line):
                    found.append((_relative(doc), line.strip(), m.group("sub")))
    return found


def relative_links() -> list[tuple[Path, str]]:
    found = []
    for doc in COMMAND_DOCS:
        for m in _LINK.finditer(without_fences(doc.read_text(encoding="utf-8"))):
            target = m.group("target")
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                continue  # absolute URLs: https:, mailto:
            found.append((doc, target))
    return found


def anchors(doc: Path) -> set[str]:
    """The fragment ids GitHub gives a Markdown file's headings (lower case, punctuation dropped,
    spaces to hyphens, repeats numbered)."""
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", without_fences(doc.read_text(encoding="utf-8")), re.M):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def test_configuration_reference_is_current() -> None:
    current = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    expected = render(example_path().read_text(encoding="utf-8"))
    assert current == expected, (
        "docs/configuration.md is stale: it differs from what the config schema generates; run `make docs`"
    )


def test_the_docs_have_full_yaml_examples() -> None:
    # Guards the filter below: if it matched nothing, every example would pass unchecked.
    assert len(yaml_configs()) >= 5


@pytest.mark.parametrize(
    ("doc", "block", "text"), [pytest.param(*c, id=f"{c[0]}#{c[1]}") for c in yaml_configs()]
)
def test_yaml_example_validates(doc: str, block: int, text: str) -> None:
    try:
        parse_config(text, f"{doc} (code block {block})", env=EXAMPLE_ENV)
    except ConfigError as exc:
        pytest.fail(f"{doc}, code block {block}, is not a valid configuration:\n{exc}")


def test_the_docs_show_commands() -> None:
    assert len(command_lines()) >= 5


def test_commands_shown_in_the_docs_exist() -> None:
    known = subcommands()
    wrong = [f"{doc}: {line!r} ({sub!r})" for doc, line, sub in command_lines() if sub not in known]
    assert not wrong, f"commands that tokengate does not have (it has {sorted(known)}):\n" + "\n".join(wrong)


def test_relative_links_point_at_files() -> None:
    missing = []
    for doc, target in relative_links():
        path, _, fragment = target.partition("#")
        file = (doc.parent / path.split("?", 1)[0]) if path else doc
        if not file.exists():
            missing.append(f"{_relative(doc)}: {target} (no such file)")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            missing.append(f"{_relative(doc)}: {target} (no such heading in {_relative(file)})")
    assert not missing, "links to files or headings that do not exist:\n" + "\n".join(missing)
