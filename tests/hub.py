"""A hub on loopback for the OAuth2 and address-book tests: a real OAuth2 authorization server
built from authlib's server components (client-credentials grant, RFC 9068 JWT access tokens
signed with an RSA key, a JWKS endpoint) and the hub's address book (the project's JSON,
behind the bearer tokens that server issues), served by aiohttp in the test's event loop.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any

from aiohttp import web
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Request, grants
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from joserfc.jwk import KeySet, RSAKey

from adapter.oauth2 import InboundOAuth2Settings, OAuth2Settings
from adapter.oauth2_inbound import BearerCheck, BearerRefused

# The token URL is plain HTTP on loopback in these tests; authlib refuses that by default.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

ISSUER = "https://auth.hub.test"
AUDIENCE = "uftp-participants"


@dataclass
class _Client(ClientMixin):
    client_id: str
    secret: str
    scope: str = "uftp"

    def get_client_id(self) -> str:
        return self.client_id

    def check_client_secret(self, client_secret: str) -> bool:
        return client_secret == self.secret

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"

    def get_allowed_scope(self, scope: str | None) -> str:
        return scope or self.scope


class _Request(OAuth2Request):
    def __init__(self, method: str, url: str, headers: Any, form: dict[str, str]) -> None:
        super().__init__(method=method, uri=url, headers=headers)
        self._form = form
        self.payload = BasicOAuth2Payload(form)

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _Grant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]  # noqa: RUF012


class _Tokens(JWTBearerTokenGenerator):
    def __init__(self, hub: Hub) -> None:
        super().__init__(ISSUER, alg="RS256", expires_generator=lambda client, grant: hub.lifetime)
        self.hub = hub

    def get_jwks(self) -> KeySet:
        return KeySet([self.hub.signing_key])

    def get_audiences(self, client: Any, user: Any, scope: Any) -> str:
        return self.hub.audience


class _Server(AuthorizationServer):
    def __init__(self, hub: Hub) -> None:
        super().__init__(scopes_supported=["uftp"])
        self.hub = hub

    def query_client(self, client_id: str) -> _Client | None:
        secret = self.hub.clients.get(client_id)
        return None if secret is None else _Client(client_id, secret)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        self.hub.issued.append(token["access_token"])

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request  # built by the aiohttp handler

    def handle_response(self, status: int, body: Any, headers: Any) -> web.Response:
        return web.Response(status=status, text=json.dumps(body), headers=dict(headers))


def _new_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid}, private=True)


@dataclass
class Hub:
    """The authorization server and the address book of one hub."""

    #: client_id -> client_secret
    clients: dict[str, str]
    #: The address book's document: the JSON body it serves.
    book: dict[str, Any] = field(default_factory=lambda: {"participants": []})
    lifetime: int = 300
    audience: str = AUDIENCE
    cache_control: str | None = None
    signing_key: RSAKey = field(default_factory=lambda: _new_key("k1"))
    issued: list[str] = field(default_factory=list)
    #: Requests seen, by path.
    requests: dict[str, int] = field(default_factory=dict)
    book_authorizations: list[str | None] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        self.server = _Server(self)
        self.server.register_grant(_Grant)
        self.server.register_token_generator("client_credentials", _Tokens(self))
        self._check: BearerCheck | None = None

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth2/token"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/oauth2/jwks"

    @property
    def book_url(self) -> str:
        return f"{self.url}/api/participants"

    def oauth2(self, client_id: str, **kw: Any) -> OAuth2Settings:
        return OAuth2Settings(self.token_url, client_id, self.clients[client_id], **kw)

    def inbound(self, **kw: Any) -> InboundOAuth2Settings:
        return InboundOAuth2Settings(self.jwks_url, AUDIENCE, ISSUER, **kw)

    def rotate_signing_key(self, kid: str) -> None:
        """Sign with a new key, and list only it: tokens signed before are invalid now."""
        self.signing_key = _new_key(kid)

    async def start(
        self, ssl_context: SSLContext | None = None, trust: SSLContext | None = None
    ) -> None:
        """Serve on a free loopback port: HTTPS with `ssl_context` (the address book asks
        its own JWKS trusting `trust`), else plain HTTP."""
        app = web.Application()
        app.router.add_post("/oauth2/token", self._token)
        app.router.add_get("/oauth2/jwks", self._jwks)
        app.router.add_get("/api/participants", self._book)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
        # The address book checks the hub's own tokens as a resource server would.
        self._check = BearerCheck(self.inbound(refetch_interval_seconds=0), ssl_context=trust)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _count(self, request: web.Request) -> None:
        self.requests[request.path] = self.requests.get(request.path, 0) + 1

    async def _token(self, request: web.Request) -> web.Response:
        self._count(request)
        form = {key: str(value) for key, value in (await request.post()).items()}
        oauth_request = _Request(request.method, str(request.url), request.headers, form)
        response: web.Response = self.server.create_token_response(oauth_request)
        return response

    async def _jwks(self, request: web.Request) -> web.Response:
        self._count(request)
        public = KeySet([self.signing_key]).as_dict(private=False)
        return web.json_response(public)

    async def _book(self, request: web.Request) -> web.Response:
        self._count(request)
        authorization = request.headers.get("Authorization")
        self.book_authorizations.append(authorization)
        assert self._check is not None
        try:
            await self._check.check(authorization)
        except BearerRefused as exc:
            return web.Response(status=401, text=exc.detail, headers=dict(exc.headers))
        headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
        return web.json_response(self.book, headers=headers)
