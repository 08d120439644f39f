"""Tools for testing code built on uftp-adapter, and the adapter itself, against real
participants: no mock stands in for the HTTP peer, the signature or the store.

- `messages`: messages as an application composes them (`composed`, `portfolio_update`) and
  a router that accepts (`accepting`);
- `network`: a loopback `Network` of participants that know each other, `eventually`, and
  `free_port`;
- `client`: a `PeerClient` that posts signed (or hostile) bodies to an endpoint, and `post`.

A pytest fixture is three lines::

    @pytest.fixture
    async def network(tmp_path):
        net = Network(tmp_path)
        yield net
        await net.close()
"""

from adapter.testing.client import XML, PeerClient, post
from adapter.testing.messages import accepting, composed, portfolio_update
from adapter.testing.network import FAST_DELIVERY, TEST_LIMITS, Network, eventually, free_port

__all__ = [
    "FAST_DELIVERY",
    "TEST_LIMITS",
    "XML",
    "Network",
    "PeerClient",
    "accepting",
    "composed",
    "eventually",
    "free_port",
    "portfolio_update",
    "post",
]
