"""auth.resource (RFC 9728 / RFC 8707): the identifier's form, the config rules with their YAML paths,
the metadata URL of RFC 9728 §3.1, the document's members and the aud rule."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gateway.authn.bearer import require_resource
from gateway.config import parse_config
from gateway.config.resource import check_resource_url, is_reserved_path, metadata_path, metadata_url
from gateway.errors import ConfigError, InvalidToken
from gateway.models import Principal
from gateway.runtime.metadata import choose_document, documents

RESOURCE = "https://mcp.example.com/mcp"


def config(*routes: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "providers": {
                "main": {"issuer": "https://idp.example.com", "client_id": "gw", "client_secret": "s"}
            },
            "routes": list(routes),
        }
    )


def route(name: str = "mcp", prefix: str = "/mcp", **auth: Any) -> dict[str, Any]:
    given_auth = {"mode": "bearer", "provider": "main", "audience": RESOURCE, "resource": RESOURCE, **auth}
    return {
        "name": name,
        "match": {"path_prefix": prefix},
        "upstream": "http://127.0.0.1:3000",
        "auth": {k: v for k, v in given_auth.items() if v is not None},
    }


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    return {p.path: p.message for p in caught.value.problems}


@pytest.mark.parametrize(
    "value",
    [
        "https://mcp.example.com/mcp",
        "https://mcp.example.com",
        "https://mcp.example.com:8443/tools/",
        "http://127.0.0.1:8080/mcp",
        "http://[::1]:8080/mcp",
        "http://localhost/mcp",
    ],
)
def test_resource_identifiers_accepted(value: str) -> None:
    assert check_resource_url(value) == value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("http://mcp.example.com/mcp", "https"),
        ("mcp.example.com/mcp", "absolute"),
        ("urn:example:mcp", "absolute"),
        ("https://mcp.example.com/mcp#x", "fragment"),
        ("https://mcp.example.com/mcp?tenant=a", "query"),
        ("https://user@mcp.example.com/mcp", "userinfo"),
        ("https://mcp.example.com/a/../mcp", "normalised"),
        ("https://mcp.example.com/a%2Fb", "percent"),
        ("https://mcp.example.com:99999/mcp", "absolute"),
    ],
)
def test_resource_identifiers_refused(value: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_resource_url(value)


def test_metadata_url_inserts_the_well_known_suffix_before_the_path() -> None:
    """RFC 9728 §3.1: host, then /.well-known/oauth-protected-resource, then the resource's path."""
    assert metadata_url("https://mcp.example.com/mcp") == (
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
    )
    assert metadata_url("https://mcp.example.com:8443/a/b/") == (
        "https://mcp.example.com:8443/.well-known/oauth-protected-resource/a/b"
    )
    assert (
        metadata_url("https://mcp.example.com")
        == "https://mcp.example.com/.well-known/oauth-protected-resource"
    )


@given(st.lists(st.from_regex(r"[a-z0-9_-]{1,8}", fullmatch=True), max_size=4))
def test_every_metadata_path_is_reserved(segments: list[str]) -> None:
    path = metadata_path("https://h.example/" + "/".join(segments))
    assert is_reserved_path(path)
    assert path.startswith("/.well-known/oauth-protected-resource")


def test_a_valid_resource_route_loads() -> None:
    cfg = parse_config(config(route()), env={})
    assert cfg.routes[0].auth.resource == RESOURCE


def test_resource_only_on_bearer_routes() -> None:
    text = config(route(mode="public", provider=None, audience=None))
    assert "bearer and bearer_or_session routes only" in problems(text)["routes[0].auth.resource"]


def test_resource_form_errors_name_the_yaml_path() -> None:
    found = problems(config(route(resource="http://mcp.example.com/mcp")))
    assert found == {"routes[0].auth.resource": "must be https:// (plain http:// only on loopback)"}


def test_missing_audience_explains_the_resource() -> None:
    """check-config explains the relation: `audience` is still required, usually the resource itself."""
    message = problems(config(route(audience=None)))["routes[0].auth.audience"]
    assert "required on bearer routes" in message
    assert f"with auth.resource usually {RESOURCE!r} (aud holds both)" in message


def test_any_audience_contradicts_a_resource() -> None:
    """`audience: "*"` would log 'any audience' while the resource still binds aud: refused as a lie."""
    message = problems(config(route(audience="*")))["routes[0].auth.audience"]
    assert "contradicts auth.resource" in message


def test_one_metadata_url_cannot_name_two_resources() -> None:
    text = config(route(), route("mcp2", "/mcp2", resource=RESOURCE + "/"))
    assert "routes[0] publishes" in problems(text)["routes[1].auth.resource"]


def test_routes_may_share_a_resource_when_they_agree() -> None:
    reads = route("reads", methods=None, scopes=["api:read"])
    writes = route("writes", "/mcp/write", scopes=["api:write"], allow_form_token=True)
    cfg = parse_config(config(reads, writes), env={})
    published = documents(cfg.routes, {"main": "https://idp.example.com"})
    (doc,) = published["/.well-known/oauth-protected-resource/mcp"]
    assert json.loads(doc.body) == {
        "resource": RESOURCE,
        "authorization_servers": ["https://idp.example.com"],
        "scopes_supported": ["api:read", "api:write"],
        "bearer_methods_supported": ["header", "body"],
    }


def test_scopes_by_method_are_all_supported() -> None:
    by_method = route(scopes_by_method={"GET": ["mcp:read"], "*": ["mcp:read", "mcp:call"]})
    cfg = parse_config(config(by_method), env={})
    (doc,) = documents(cfg.routes, {"main": "https://idp.example.com"})[
        "/.well-known/oauth-protected-resource/mcp"
    ]
    assert json.loads(doc.body)["scopes_supported"] == ["mcp:read", "mcp:call"]


def test_the_well_known_prefix_is_reserved_for_the_gateway() -> None:
    """An upstream route cannot claim the metadata paths (it would publish another server's metadata)."""
    text = config(route(), route("shadow", "/.well-known/oauth-protected-resource/mcp", resource=None))
    assert "reserved for the gateway" in problems(text)["routes[1].match.path_prefix"]


def principal(aud: Any) -> Principal:
    return Principal(subject="alice", source="jwt", claims={"aud": aud} if aud is not None else {})


@pytest.mark.parametrize("aud", [RESOURCE, ["api", RESOURCE]])
def test_a_token_for_the_resource_passes(aud: Any) -> None:
    require_resource(principal(aud), RESOURCE)


@pytest.mark.parametrize(
    "aud",
    [None, "https://other.example.com/api", RESOURCE + "/", [RESOURCE.upper()], "https://mcp.example.com"],
)
def test_a_token_for_another_resource_is_refused(aud: Any) -> None:
    """Audience confusion: only an exact `aud` entry binds the token to this resource (RFC 8707 §2)."""
    with pytest.raises(InvalidToken):
        require_resource(principal(aud), RESOURCE)


def test_no_resource_no_rule() -> None:
    require_resource(principal(None), None)


def test_two_hosts_may_share_a_path_and_host_picks_the_document() -> None:
    a = route("a", resource="https://a.example.com/mcp", audience="https://a.example.com/mcp")
    b = route("b", "/mcp2", resource="https://b.example.com/mcp", audience="https://b.example.com/mcp")
    a["match"]["host"], b["match"]["host"] = "a.example.com", "b.example.com"
    cfg = parse_config(config(a, b), env={})
    docs = documents(cfg.routes, {"main": "https://idp.example.com"})[
        "/.well-known/oauth-protected-resource/mcp"
    ]
    assert choose_document(docs, "B.example.com:443") is not None
    assert choose_document(docs, "B.example.com:443").resource == "https://b.example.com/mcp"  # type: ignore[union-attr]
    assert choose_document(docs, "a.example.com").resource == "https://a.example.com/mcp"  # type: ignore[union-attr]
    assert choose_document(docs, "c.example.com") is None  # ambiguous without a matching host: 404
    assert choose_document(docs, None) is None
