"""An in-process API client whose requests come from an address of its own."""

from __future__ import annotations

import falcon.testing

from tests import factories as f


class OwnAddressClient(falcon.testing.TestClient):
    """falcon's TestClient, every request from one fresh address (``f.new_ip()``).

    falcon's default source is 127.0.0.1 for every test: the per-IP rate limits
    (the token endpoint's 20/s) would then count the whole session's requests
    and refuse whichever test came after a busy one. Each test owns its IP.
    """

    def __init__(self, app, **kwargs) -> None:
        super().__init__(app, **kwargs)
        self.remote_addr = f.new_ip()

    def simulate_request(self, *args, **kwargs):
        kwargs.setdefault("remote_addr", self.remote_addr)
        return super().simulate_request(*args, **kwargs)


def bearer(client: falcon.testing.TestClient, merchant: dict) -> dict:
    """Authorization headers with a fresh access token of ``merchant``'s client."""
    resp = client.simulate_post("/v1/oauth/token", json=f.client_credentials(merchant))
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json['access_token']}"}
