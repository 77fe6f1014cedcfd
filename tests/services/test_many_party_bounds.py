"""What a many-party node holds for its sessions stays bounded whatever its authenticated peers send (review
small findings 1, 4, 5): early key messages (only for sessions that can still open, each of a checked size,
a share per peer), the messages one session takes from a peer, the used session ids it remembers."""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import pytest

from mpcdp.protocol import shamir
from mpcdp.protocol.masked import KEY_BYTES, KeyShares, MaskedInput
from services import many_party

SID = bytes(16)


class FakeHub:
    """What a Router needs of a :class:`services.link.Hub`: handlers, and the sessions closed on it."""

    def __init__(self):
        self.handlers = {}
        self._closed: OrderedDict[bytes, None] = OrderedDict()

    def on(self, kind, handler):
        self.handlers[kind] = handler

    def on_drop(self, handler):
        self.dropped = handler

    def is_closed(self, session):
        return session in self._closed

    def close_session(self, session):
        self._closed[session] = None


def keys(sender="p01", recipient="p02", session=SID, key=bytes(KEY_BYTES), share=bytes(shamir.SHARE_BYTES)):
    return KeyShares(session, sender, recipient, key, share, share)


def push(hub, peer, msg, session=SID):
    hub.handlers["many/keys"](peer, session, 0, memoryview(many_party.encode(msg)))


@pytest.mark.parametrize(
    "msg",
    [
        keys(key=bytes(10_000)),
        keys(share=bytes(shamir.SHARE_BYTES + 1)),
        keys(session=bytes(4096)),
        keys(sender="p" * 10_000),
        MaskedInput(bytes(300), "p01", np.zeros(1, dtype=np.uint64)),
    ],
    ids=["big-key", "long-share", "long-session-id", "long-name", "masked-long-session-id"],
)
def test_decode_refuses_fields_of_the_wrong_size(msg):
    with pytest.raises(ValueError):
        many_party.decode(many_party.encode(msg))
    many_party.decode(many_party.encode(keys()))  # the right sizes pass


def test_early_keys_are_held_only_for_sessions_that_can_open_and_a_share_per_peer():
    hub = FakeHub()
    router = many_party.Router(hub)
    closed = bytes([1]) * 16
    router.close(closed)  # this node finished (or refused) that session
    push(hub, "p01", keys(session=closed), closed)
    assert router._held == 0  # its keys are not held: it never opens again
    for i in range(many_party.EARLY_PER_PEER + 50):  # one peer floods sessions this node has not opened
        sid = i.to_bytes(16, "big")
        push(hub, "p01", keys(session=sid), sid)
    assert router._held == many_party.EARLY_PER_PEER
    push(hub, "p03", keys(sender="p03"))  # another peer still gets its keys held
    assert router._held == many_party.EARLY_PER_PEER + 1
    net = router.open(SID)  # the session opens: its held keys (p01's and p03's) are delivered
    assert {net.inbox.get_nowait()[0] for _ in range(2)} == {"p01", "p03"} and net.inbox.empty()
    assert router._held == many_party.EARLY_PER_PEER - 1 and router._held_from["p01"] == many_party.EARLY_PER_PEER - 1


def test_a_session_takes_a_bounded_number_of_messages_of_a_type_from_a_peer():
    net = many_party.HubNetwork(FakeHub(), SID)
    for _ in range(1000):
        net.deliver("p01", keys())
    net.deliver("p03", keys(sender="p03"))
    assert net.inbox.qsize() == many_party.PER_KIND + 1  # a duplicate still reaches the driver, which refuses it


def test_a_party_node_remembers_a_bounded_number_of_used_sessions(monkeypatch):
    from services import party_node

    monkeypatch.setattr(party_node, "CLOSED_REMEMBERED", 3)

    node = SimpleNamespace(_closed=OrderedDict())
    for i in range(10):
        many_party._mark_used(node, i.to_bytes(16, "big"))
    assert list(node._closed) == [i.to_bytes(16, "big") for i in (7, 8, 9)]
