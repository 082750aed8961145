"""Webhook connection pools: one per (scheme, host, port, address), connecting to the address."""

from __future__ import annotations

from shared.domain.webhooks import Target
from workers.webhook_http import PinnedPools


def test_a_pool_connects_to_the_vetted_address_and_names_the_host():
    pools = PinnedPools()
    target = Target("https", "hooks.example.com", 8443, ("93.184.216.34", "2606:2800:220:1::1"))
    pool = pools.pool(target, "93.184.216.34", None)
    assert (pool.host, pool.port) == ("93.184.216.34", 8443)
    conn = pool._new_conn()
    assert (conn.host, conn.server_hostname, conn.assert_hostname) == (
        "93.184.216.34",
        "hooks.example.com",
        "hooks.example.com",
    )


def test_pools_are_kept_per_host_and_address():
    pools = PinnedPools()
    a, b = (Target("http", name, 80, ("93.184.216.34", "93.184.216.35")) for name in "ab")
    same = pools.pool(a, "93.184.216.34", None)
    assert pools.pool(a, "93.184.216.34", None) is same
    # Another name on the same address, or the same name on another address: never shared.
    assert pools.pool(b, "93.184.216.34", None) is not same
    assert pools.pool(a, "93.184.216.35", None) is not same
