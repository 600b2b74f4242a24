"""One running test OpenID provider (devtools/idp/launcher.mjs, npm oidc-provider 8.8.1) as a child process,
and the client calls tests and bench make against it (PKCE code flow, refresh, introspection, revocation)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import aiohttp
from yarl import URL

from devtools.idp.pages import PageParser, basic_auth, error_text, loopback_session, origin, pkce_pair
from devtools.idp.settings import (
    DEFAULT_CLIENT_SECRETS,
    DEFAULT_REDIRECT_URI,
    DEFAULT_SCOPE,
    AccessTokenFormat,
    ClientAuth,
    IdPError,
    IdPFlowError,
    IdPSettings,
)
from devtools.net import free_port, wait_for_port
from devtools.procs import Proc

IDP_DIR = Path(__file__).resolve().parent
LAUNCHER = IDP_DIR / "launcher.mjs"
READY_TIMEOUT = 20.0

# ---- the handle -----------------------------------------------------------------------------------------


class IdP:
    """One running oidc-provider; ``restart()`` keeps the port and (without a key file) rotates the keys."""

    client_id = "gw"
    client_secret = "gw-secret"
    introspection_client_id = "introspector"
    introspection_client_secret = "introspector-secret"

    def __init__(self, settings: IdPSettings, log_dir: Path, port: int | None = None) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.port = port or 0
        self._proc: Proc | None = None
        self._starts = 0

    # -- addresses
    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def resource(self) -> str:
        """The audience string (``aud``) of resource-bound access tokens: configure the gateway with it."""
        return self.settings.resource

    @property
    def resource_indicator(self) -> str:
        """What a client sends as ``resource=`` (oidc-provider wants an absolute URI there)."""
        res = self.settings.resource
        return res if urlsplit(res).scheme else f"urn:tokengate:resource:{res}"

    @property
    def redirect_uri(self) -> str:
        return self.settings.redirect_uris[0]

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.issuer}/auth"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def userinfo_endpoint(self) -> str:
        return f"{self.issuer}/me"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.issuer}/token/introspection"

    @property
    def revocation_endpoint(self) -> str:
        return f"{self.issuer}/token/revocation"

    @property
    def end_session_endpoint(self) -> str:
        return f"{self.issuer}/session/end"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.alive()

    @property
    def pid(self) -> int | None:
        """The provider's process id while it runs (bench measures its CPU time)."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"idp-{self.port}-{self._starts}.err"

    # -- process control
    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"the IdP on port {self.port} is already running")
        ensure_node_modules()
        fixed_port = self.port != 0
        for _attempt in range(1 if fixed_port else 3):
            if not fixed_port:
                self.port = free_port()
            if self._spawn():
                return
        raise RuntimeError(f"the IdP did not start; stderr:\n{self._stderr_tail()}")

    def _spawn(self) -> bool:
        """Start the launcher and wait for its READY line; False if the port was taken meanwhile."""
        self._starts += 1
        stem = self.log_dir / f"idp-{self.port}-{self._starts}"
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not on PATH: the OpenID provider needs Node.js 20")
        env = {**os.environ, **self.settings.environment(self.port)}
        out = Path(f"{stem}.out")
        proc = Proc("idp", [node, str(LAUNCHER)], out, env=env, cwd=IDP_DIR, stderr_log=self.stderr_path)
        self._proc = proc
        deadline = time.monotonic() + READY_TIMEOUT
        expected = f"IDP READY {self.issuer}".encode()
        while time.monotonic() < deadline:
            if out.read_bytes().startswith(expected):
                wait_for_port(self.port, timeout=2)
                return True
            if not proc.alive():
                self._proc = None
                if "cannot listen" in self._stderr_tail():
                    return False  # the free port was taken meanwhile: try another one
                raise RuntimeError(f"the IdP exited at start; stderr:\n{self._stderr_tail()}")
            time.sleep(0.02)
        tail = self._stderr_tail()
        self.stop()
        raise TimeoutError(f"the IdP printed no READY line within {READY_TIMEOUT}s; stderr:\n{tail}")

    def _stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "<no stderr>"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; idempotent."""
        if self._proc is not None:
            self._proc.stop(timeout=5)
        self._proc = None

    def pause(self) -> None:
        """SIGSTOP the provider: it keeps its port and state but answers nothing (a hang, not a refusal)."""
        assert self._proc is not None
        self._proc.signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.signal(signal.SIGCONT)

    def restart(self) -> None:
        """Same port and settings; fresh signing keys (unless ``key_file``) and all tokens/sessions lost."""
        self.stop()
        self.start()

    # -- request counters (GET /__counters), requests per path since start or the last reset
    def counters(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.issuer}/__counters", timeout=5) as resp:
            data: dict[str, int] = json.loads(resp.read())
        return data

    def reset_counters(self) -> None:
        req = urllib.request.Request(f"{self.issuer}/__counters/reset", method="POST")
        with urllib.request.urlopen(req, timeout=5):
            pass

    # -- browserless flows
    async def follow_interactions(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        login: str = "alice",
        password: str = "pw",  # noqa: S107 - devInteractions accept any password
    ) -> str:
        """Walk the provider's pages from ``url`` (an /auth or /session/end URL, e.g. the gateway's redirect)
        like a browser: follow redirects, sign in as ``login``, confirm consent and logout prompts. Returns
        the first URL outside the provider (never fetched), or the provider URL of a final page without a
        form. ``session`` must keep 127.0.0.1 cookies: use ``loopback_session()``.
        """
        issuer_origin = origin(self.issuer)
        method, data = "GET", None
        for _hop in range(30):
            if origin(url) != issuer_origin:
                return url
            async with session.request(method, url, data=data, allow_redirects=False) as resp:
                if resp.status in (301, 302, 303, 307, 308):
                    location = resp.headers.get("Location")
                    if not location:
                        raise IdPFlowError(f"redirect without Location from {url}")
                    url = urljoin(url, location)
                    method, data = "GET", None
                    continue
                if resp.status != 200:
                    raise IdPFlowError(await error_text(resp))
                page = await resp.text()
            parser = PageParser()
            parser.feed(page)
            form = parser.form
            if form is None:
                return url
            data = dict(form.fields)
            if "login" in form.names:
                data["login"] = login
            if "password" in form.names:
                data["password"] = password
            if parser.has_logout_button:
                data["logout"] = "yes"
            url = urljoin(url, form.action) if form.action else url
            method = "POST" if form.method == "post" else "GET"
        raise IdPFlowError(f"more than 30 hops through the provider, last at {url}")

    def authorization_url(
        self,
        *,
        code_challenge: str,
        state: str,
        nonce: str,
        scope: str = DEFAULT_SCOPE,
        redirect_uri: str | None = None,
        client_id: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> str:
        params = {
            "response_type": "code",
            "client_id": client_id or self.client_id,
            "redirect_uri": redirect_uri or self.redirect_uri,
            "scope": scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
            **(extra or {}),
        }
        return str(URL(self.authorization_endpoint).with_query(params))

    async def authorize(
        self,
        login: str = "alice",
        scope: str = DEFAULT_SCOPE,
        *,
        redirect_uri: str | None = None,
        client_id: str | None = None,
        extra: Mapping[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
        password: str = "pw",  # noqa: S107 - with acr_values, the password picks the login's acr
    ) -> dict[str, str]:
        """Front half of the code flow: returns the redirect's parameters (code, state, iss) plus the
        ``code_verifier``, ``redirect_uri`` and ``nonce`` used. The redirect URI is never contacted.
        """
        verifier, challenge = pkce_pair()
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        redirect_uri = redirect_uri or self.redirect_uri
        url = self.authorization_url(
            code_challenge=challenge,
            state=state,
            nonce=nonce,
            scope=scope,
            redirect_uri=redirect_uri,
            client_id=client_id,
            extra=extra,
        )
        async with contextlib.AsyncExitStack() as stack:
            if session is None:
                session = await stack.enter_async_context(loopback_session())
            final = await self.follow_interactions(session, url, login=login, password=password)
        if not final.startswith(redirect_uri):
            raise IdPFlowError(f"the flow ended at {final}, not at {redirect_uri}")
        params = dict(parse_qsl(urlsplit(final).query))
        if "code" not in params:
            raise IdPFlowError(f"no code in the authorization response {final}")
        if params.get("state") != state:
            raise IdPFlowError(f"state mismatch in {final}")
        return {**params, "code_verifier": verifier, "redirect_uri": redirect_uri, "nonce": nonce}

    async def token_request(
        self,
        data: Mapping[str, str],
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        client_auth: ClientAuth | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """POST /token with client authentication; returns (status, JSON body) whatever the status."""
        return await self._post_form(self.token_endpoint, data, client_id, client_secret, client_auth)

    async def obtain_tokens(
        self,
        login: str = "alice",
        scope: str = DEFAULT_SCOPE,
        redirect_uri: str | None = None,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        client_auth: ClientAuth | None = None,
        extra: Mapping[str, str] | None = None,
        password: str = "pw",  # noqa: S107 - with acr_values, the password picks the login's acr
    ) -> dict[str, Any]:
        """A full browserless authorization code + PKCE flow; the token response (access_token,
        refresh_token, id_token, expires_in, scope, token_type). Raises IdPError on a token error.
        """
        client_id = client_id or self.client_id
        params = await self.authorize(
            login, scope, redirect_uri=redirect_uri, client_id=client_id, extra=extra, password=password
        )
        status, body = await self.token_request(
            {
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": params["redirect_uri"],
                "code_verifier": params["code_verifier"],
            },
            client_id=client_id,
            client_secret=client_secret,
            client_auth=client_auth,
        )
        if status != 200:
            raise IdPError(status, body, "authorization_code grant")
        return body

    async def refresh(
        self,
        refresh_token: str,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        client_auth: ClientAuth | None = None,
    ) -> dict[str, Any]:
        """refresh_token grant (rotation is on: the answer carries a new refresh token). IdPError on error."""
        status, body = await self.token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token},
            client_id=client_id,
            client_secret=client_secret,
            client_auth=client_auth,
        )
        if status != 200:
            raise IdPError(status, body, "refresh_token grant")
        return body

    async def introspect(self, token: str, token_type_hint: str | None = None) -> dict[str, Any]:
        """RFC 7662 introspection as the ``introspector`` client."""
        data = {"token": token, **({"token_type_hint": token_type_hint} if token_type_hint else {})}
        status, body = await self._post_form(
            self.introspection_endpoint,
            data,
            self.introspection_client_id,
            self.introspection_client_secret,
            "client_secret_basic",
        )
        if status != 200:
            raise IdPError(status, body, "introspection")
        return body

    async def revoke(
        self,
        token: str,
        token_type_hint: str | None = None,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        client_auth: ClientAuth | None = None,
    ) -> None:
        """RFC 7009 revocation as the token's client (default ``gw``). In oidc-provider 8 revoking an access
        token leaves its refresh token alive; revoking a refresh token revokes the whole grant.
        """
        data = {"token": token, **({"token_type_hint": token_type_hint} if token_type_hint else {})}
        status, body = await self._post_form(
            self.revocation_endpoint, data, client_id, client_secret, client_auth
        )
        if status != 200:
            raise IdPError(status, body, "revocation")

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        """GET /me with a bearer token (opaque, userinfo-bound tokens only)."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"}) as resp,
        ):
            body = await resp.json(content_type=None)
            if resp.status != 200:
                raise IdPError(resp.status, body, "userinfo")
            result: dict[str, Any] = body
            return result

    async def get_json(self, path_or_url: str) -> tuple[int, Any]:
        """GET a provider URL (or path, e.g. "/jwks"); returns (status, parsed JSON or None)."""
        url = urljoin(self.issuer, path_or_url)
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, None

    async def jwks(self) -> dict[str, Any]:
        status, body = await self.get_json("/jwks")
        if status != 200:
            raise IdPError(status, body, "jwks")
        result: dict[str, Any] = body
        return result

    async def _post_form(
        self,
        url: str,
        data: Mapping[str, str],
        client_id: str | None,
        client_secret: str | None,
        client_auth: ClientAuth | None,
    ) -> tuple[int, dict[str, Any]]:
        client_id = client_id or self.client_id
        if client_secret is None:
            client_secret = DEFAULT_CLIENT_SECRETS.get(client_id, self.client_secret)
        if client_auth is None:
            client_auth = "client_secret_post" if client_id == "gw-post" else "client_secret_basic"
        form = dict(data)
        headers: dict[str, str] = {}
        if client_auth == "client_secret_post":
            form.update(client_id=client_id, client_secret=client_secret)
        else:
            headers["Authorization"] = basic_auth(client_id, client_secret)
        async with aiohttp.ClientSession() as session, session.post(url, data=form, headers=headers) as resp:
            text = await resp.text()
            try:
                body = json.loads(text) if text else {}
            except ValueError:
                body = {"error": "non_json_response", "body": text[:500]}
            return resp.status, body


# ---- node_modules ----------------------------------------------------------------------------------------


def ensure_node_modules() -> None:
    """``npm ci`` in devtools/idp once if node_modules is missing (file-locked against parallel workers)."""
    marker = IDP_DIR / "node_modules" / "oidc-provider" / "package.json"
    if marker.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"npm is not on PATH and {IDP_DIR}/node_modules is missing")
    lock_path = Path(tempfile.gettempdir()) / "tokengate-idp-npm-ci.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=IDP_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"npm ci in {IDP_DIR} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )


class IdPFactory:
    """Starts providers with given settings (on free ports) and stops all of them at ``close()``."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[IdP] = []

    def __call__(
        self,
        *,
        access_token_ttl: int = 300,
        refresh_token_ttl: int = 86400,
        id_token_ttl: int = 3600,
        access_token_format: AccessTokenFormat = "opaque",  # noqa: S107 - not a secret
        resource: str = "api",
        account_claims: Mapping[str, Mapping[str, Any]] | None = None,
        redirect_uris: Sequence[str] | None = None,
        post_logout_redirect_uris: Sequence[str] | None = None,
        backchannel_logout_uri: str | None = None,
        backchannel_logout_session_required: bool = True,
        clients: Sequence[Mapping[str, Any]] | None = None,
        discovery: bool = True,
        key_file: Path | None = None,
        acr_values: Sequence[str] = (),
        acr_reprompt: bool = True,
        acr_publish: bool = True,
        extra_resources: Sequence[str] = (),
        registration: bool = False,
    ) -> IdP:
        settings = IdPSettings(
            access_token_ttl=access_token_ttl,
            refresh_token_ttl=refresh_token_ttl,
            id_token_ttl=id_token_ttl,
            access_token_format=access_token_format,
            resource=resource,
            redirect_uris=tuple(redirect_uris or (DEFAULT_REDIRECT_URI,)),
            post_logout_redirect_uris=post_logout_redirect_uris,
            backchannel_logout_uri=backchannel_logout_uri,
            backchannel_logout_session_required=backchannel_logout_session_required,
            clients=clients,
            discovery=discovery,
            key_file=key_file,
            acr_values=tuple(acr_values),
            acr_reprompt=acr_reprompt,
            acr_publish=acr_publish,
            extra_resources=tuple(extra_resources),
            registration=registration,
        )
        if account_claims is not None:
            settings = replace(settings, account_claims=account_claims)
        return self.start(settings)

    def start(self, settings: IdPSettings) -> IdP:
        idp = IdP(settings, self.log_dir)
        self.started.append(idp)
        idp.start()
        return idp

    def close(self) -> None:
        for idp in self.started:
            idp.stop()
        self.started.clear()
