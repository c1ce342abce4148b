"""A minimal OpenID provider for the web app's sign-in test (authorization code + PKCE S256).

It stands in for the team's identity provider, which is not the thing under test: the browser's
code flow (oauth4webapi), the page's CSP and the API's JWKS verification are. Every authorization
request is approved at once for ``USER``; access tokens are RS256 JWTs whose keys are published at
the JWKS URL. CORS is open, as a real provider's is for public clients.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

USER = "oidc-user@example.com"
CLIENT_ID = "taskflow-web"


@dataclass
class Provider:
    issuer: str = ""
    key: Any = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens_issued: int = 0

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
        }

    def authorize(self, args: Any) -> Response:
        if args.get("client_id") != CLIENT_ID or args.get("code_challenge_method") != "S256":
            return Response("bad authorization request", 400)
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"challenge": args["code_challenge"], "redirect_uri": args["redirect_uri"]}
        query = urlencode({"code": code, "state": args["state"], "iss": self.issuer})
        return Response(status=302, headers={"Location": f"{args['redirect_uri']}?{query}"})

    def token(self, form: Any) -> Response:
        grant = self.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if grant is None or digest != grant["challenge"] or form.get("redirect_uri") != grant["redirect_uri"]:
            return _json({"error": "invalid_grant"}, 400)
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": USER, "aud": CLIENT_ID, "iat": now, "exp": now + 600}
        signed = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "k1"})
        self.tokens_issued += 1
        body = {"access_token": signed, "id_token": signed, "token_type": "Bearer", "expires_in": 600}
        return _json({**body, "scope": "openid"})

    def __call__(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        if request.method == "OPTIONS":
            resp = Response(status=204)
        elif request.path == "/.well-known/openid-configuration":
            resp = _json(self.discovery())
        elif request.path == "/jwks":
            resp = _json(self.jwks())
        elif request.path == "/authorize":
            resp = self.authorize(request.args)
        elif request.path == "/token" and request.method == "POST":
            resp = self.token(request.form)
        else:
            resp = Response("not found", 404)
        resp.headers["Access-Control-Allow-Origin"] = "*"
        resp.headers["Access-Control-Allow-Headers"] = "*"
        return resp(environ, start_response)


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status, content_type="application/json")


@contextmanager
def running(port: int) -> Iterator[Provider]:
    provider = Provider(issuer=f"http://127.0.0.1:{port}")
    server = make_server("127.0.0.1", port, provider, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
