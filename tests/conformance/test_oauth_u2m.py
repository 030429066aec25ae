"""OAuth U2M (issue 11): `/oidc/v1/authorize` with PKCE, the sign-in page, the authorization-code
and refresh-token grants, and the SDK's `external-browser` flow completed in headless Chromium."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import sys
import textwrap
import urllib.parse
from pathlib import Path

import pytest
import requests

from kiln_helpers import http, unique


def pkce():
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def authorize_params(challenge: str, redirect: str = "http://localhost:8020", **extra) -> dict:
    return {
        "response_type": "code",
        "client_id": "databricks-cli",
        "redirect_uri": redirect,
        "scope": "all-apis offline_access",
        "state": "st-" + secrets.token_hex(4),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


@pytest.fixture(scope="module")
def person(kiln, w):
    name = unique("u2m") + "@example.com"
    password = "pw-" + secrets.token_hex(8)
    w.api_client.do("POST", "/api/2.0/preview/scim/v2/Users", body={"userName": name, "password": password})
    return {"name": name, "password": password}


def sign_in(kiln, params: dict, **credentials) -> requests.Response:
    s = http()
    return s.post(kiln.url("/oidc/v1/authorize"), data={**params, **credentials}, allow_redirects=False)


def token(kiln, **form) -> requests.Response:
    return http().post(kiln.url("/oidc/v1/token"), data=form)


def test_discovery_advertises_the_code_flow(kiln):
    d = http().get(kiln.url("/oidc/.well-known/oauth-authorization-server")).json()
    assert d["authorization_endpoint"] == kiln.url("/oidc/v1/authorize")
    assert {"authorization_code", "refresh_token"} <= set(d["grant_types_supported"])
    assert d["code_challenge_methods_supported"] == ["S256"]


def test_the_sign_in_page_and_its_refusals(kiln):
    _, challenge = pkce()
    r = http().get(kiln.url("/oidc/v1/authorize"), params=authorize_params(challenge))
    assert r.status_code == 200 and "text/html" in r.headers["content-type"], r.text
    assert "Sign in" in r.text and "databricks-cli" in r.text
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    for bad in (
        authorize_params(challenge, redirect="http://evil.example.com:8020"),
        authorize_params(challenge, redirect="https://localhost:8020"),
        authorize_params(challenge, code_challenge_method="plain"),
        authorize_params(challenge, response_type="token"),
    ):
        r = http().get(kiln.url("/oidc/v1/authorize"), params=bad, allow_redirects=False)
        assert r.status_code == 400 and "location" not in r.headers, (bad, r.status_code)
    # markup in a parameter is shown as text
    r = http().get(kiln.url("/oidc/v1/authorize"), params=authorize_params(challenge, client_id="<script>x</script>"))
    assert "<script>x</script>" not in r.text and "&lt;script&gt;" in r.text


def test_code_grant_with_pkce_then_refresh(kiln, person):
    verifier, challenge = pkce()
    params = authorize_params(challenge)
    assert sign_in(kiln, params, username=person["name"], password="wrong").status_code == 401
    r = sign_in(kiln, params, username=person["name"], password=person["password"])
    assert r.status_code == 303, r.text
    location = urllib.parse.urlparse(r.headers["location"])
    assert (location.scheme, location.netloc) == ("http", "localhost:8020")
    query = dict(urllib.parse.parse_qsl(location.query))
    assert query["state"] == params["state"] and query["code"]
    common = {"client_id": "databricks-cli", "redirect_uri": params["redirect_uri"], "code": query["code"]}
    # a wrong verifier spends the code
    r = token(kiln, grant_type="authorization_code", code_verifier="x" * 43, **common)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    r = token(kiln, grant_type="authorization_code", code_verifier=verifier, **common)
    assert r.status_code == 400, r.text
    # a fresh code with the right verifier
    r = sign_in(kiln, params, username=person["name"], password=person["password"])
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(r.headers["location"]).query))["code"]
    r = token(kiln, grant_type="authorization_code", code_verifier=verifier, **{**common, "code": code})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["refresh_token"]
    me = http(body["access_token"]).get(kiln.url("/api/2.0/preview/scim/v2/Me")).json()
    assert me["userName"] == person["name"]
    # the code is single use
    r = token(kiln, grant_type="authorization_code", code_verifier=verifier, **{**common, "code": code})
    assert r.status_code == 400
    # refresh rotates: the new pair works, the old refresh token does not
    r = token(kiln, grant_type="refresh_token", refresh_token=body["refresh_token"], client_id="databricks-cli")
    assert r.status_code == 200, r.text
    fresh = r.json()
    assert fresh["refresh_token"] != body["refresh_token"]
    assert http(fresh["access_token"]).get(kiln.url("/api/2.0/preview/scim/v2/Me")).json()["userName"] == person["name"]
    r = token(kiln, grant_type="refresh_token", refresh_token=body["refresh_token"], client_id="databricks-cli")
    assert r.status_code == 400
    # another client cannot use it
    r = token(kiln, grant_type="refresh_token", refresh_token=fresh["refresh_token"], client_id="other-client")
    assert r.status_code == 400


def test_refresh_tokens_survive_a_restart(kiln_factory):
    server = kiln_factory()
    verifier, challenge = pkce()
    params = authorize_params(challenge)
    r = sign_in(server, params, token=server.token)
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(r.headers["location"]).query))["code"]
    r = token(server, grant_type="authorization_code", code_verifier=verifier, code=code,
              client_id="databricks-cli", redirect_uri=params["redirect_uri"])  # fmt: skip
    refresh = r.json()["refresh_token"]
    server.restart()
    r = token(server, grant_type="refresh_token", refresh_token=refresh, client_id="databricks-cli")
    assert r.status_code == 200, r.text
    assert http(r.json()["access_token"]).get(server.url("/api/2.0/preview/scim/v2/Me")).json()["userName"] == "admin"


SDK_LOGIN = """
    import sys
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config
    w = WorkspaceClient(config=Config(host=sys.argv[1], auth_type="external-browser"))
    print(w.current_user.me().user_name)
"""


def test_sdk_external_browser_login_in_headless_chromium(kiln, person, tmp_path):
    if not Path(os.environ.get("KILN_CHROMIUM", "/usr/bin/chromium")).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    script = tmp_path / "login.py"
    script.write_text(textwrap.dedent(SDK_LOGIN))
    browser_log = tmp_path / "browser.log"
    env = {
        **os.environ,
        "HOME": str(tmp_path),  # the SDK's token cache starts empty
        "BROWSER": f"{sys.executable} {Path(__file__).parent / 'oauth_browser.py'} %s",
        "KILN_TEST_USER": person["name"],
        "KILN_TEST_PASSWORD": person["password"],
        "KILN_BROWSER_LOG": str(browser_log),
    }
    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_FILE"):
        env.pop(name, None)
    r = subprocess.run([sys.executable, str(script), kiln.host], capture_output=True, text=True, env=env,
                       timeout=180, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, (r.stderr[-3000:], browser_log.read_text() if browser_log.exists() else "no browser log")
    assert r.stdout.strip().splitlines()[-1] == person["name"]
    # the browser really went through the sign-in page and the SDK's callback
    assert browser_log.read_text().startswith("http://localhost:8020/?code=")
