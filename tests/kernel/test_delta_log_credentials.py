"""The pipeline worker's Delta log reader on Kiln's object-store root: with a
lease on scoped engine credentials it fetches them from Kiln's endpoint (the
container-credentials protocol) and fetches them again before they expire."""

import http.server
import json
import os
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "crates", "kiln-pipelines", "python"))

from kiln_pipelines import delta_log  # noqa: E402


@pytest.fixture
def endpoint(monkeypatch):
    seen = []
    answers = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            body = json.dumps(answers.pop(0)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{server.server_port}/kiln/engine-credentials")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "lease-token")
    monkeypatch.setenv("AWS_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    delta_log._FS.update(fs=None, until=0.0)
    yield seen, answers
    server.shutdown()
    delta_log._FS.update(fs=None, until=0.0)


def creds(key, seconds):
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
    return {"AccessKeyId": key, "SecretAccessKey": "secret", "Token": "token", "Expiration": expires}


def test_leased_credentials_are_fetched_with_the_token_and_kept_until_near_expiry(endpoint):
    seen, answers = endpoint
    answers.append(creds("ASIAFIRST", 3600))
    key, secret, token, expires = delta_log._container_credentials()
    assert (key, secret, token) == ("ASIAFIRST", "secret", "token")
    assert abs(expires - (time.time() + 3600)) < 5
    assert seen == ["lease-token"]
    # The client is made with them once, and kept while they last.
    answers.append(creds("ASIAFIRST", 3600))
    first = delta_log._s3()
    assert delta_log._s3() is first and len(seen) == 2
    # Within five minutes of their end: fetched again, a new client.
    delta_log._FS["until"] = time.time() - 1
    answers.append(creds("ASIASECOND", 3600))
    assert delta_log._s3() is not first and len(seen) == 3


def test_without_a_lease_the_environment_keys_are_used(monkeypatch):
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    assert delta_log._container_credentials() is None
