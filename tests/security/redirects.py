"""Where a redirect really goes: the open-redirect corpus, a WHATWG resolver (Node's URL, the same URL
Standard browsers implement) and a conservative Python model of it for property tests (no tests here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

CORPUS = Path(__file__).parent / "data" / "open_redirects.txt"
_ESCAPE = re.compile(r"\\(t|n|r|\\|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})")
_SIMPLE = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
# WHATWG URL §4.4: leading/trailing "C0 control or space" are stripped, ASCII tab or newline removed.
_C0_OR_SPACE = "".join(chr(c) for c in range(0x21))


def _unescape(line: str) -> str:
    if line == "\\e":
        return ""

    def one(found: re.Match[str]) -> str:
        code = found.group(1)
        return _SIMPLE[code] if code in _SIMPLE else chr(int(code[1:], 16))

    return _ESCAPE.sub(one, line)


def load_corpus() -> list[str]:
    """Every target of the corpus, decoded, in file order, without duplicates."""
    seen: dict[str, None] = {}
    for line in CORPUS.read_text(encoding="utf-8").split("\n"):
        if not line or line.startswith("#"):
            continue
        seen.setdefault(_unescape(line), None)
    return list(seen)


def origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, parts.hostname, port


def model_stays_on_origin(location: str) -> bool:
    """What a browser does with a Location value, conservatively: True only when it must resolve to a
    path on the page's own origin (no scheme, not scheme-relative after the URL Standard's clean-up)."""
    cleaned = location.strip(_C0_OR_SPACE)
    cleaned = cleaned.replace("\t", "").replace("\n", "").replace("\r", "").replace("\\", "/")
    if _SCHEME.match(cleaned):
        return False  # an absolute URL: its own origin (or none, for javascript: and data:)
    return cleaned.startswith("/") and not cleaned.startswith("//")


_NODE_RESOLVE = """
const base = process.argv[1];
let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  const out = JSON.parse(input).map((t) => {
    try { return new URL(t, base).href; } catch (e) { return null; }
  });
  process.stdout.write(JSON.stringify(out));
});
"""


def whatwg_resolve(locations: list[str], base: str) -> list[str | None]:
    """Resolve each Location value against ``base`` with Node's WHATWG URL parser (None: a parse error,
    which a browser treats as a failed navigation, not a redirect)."""
    node = shutil.which("node")
    assert node is not None, "node is needed (the test provider runs on it too)"
    done = subprocess.run(
        [node, "-e", _NODE_RESOLVE, base],
        input=json.dumps(locations),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: list[str | None] = json.loads(done.stdout)
    assert len(result) == len(locations)
    return result
