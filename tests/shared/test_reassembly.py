"""Multi-part reassembly on fakeredis."""

from tests.shared.conftest import A, B, inbound


def test_multipart_reassembles_in_any_order_and_relays_once(world):
    _, conversation = world.start()
    reassembler = world.services.reassembler
    proxy = conversation.participants[0].proxy_number
    parts = {3: "world", 1: "hello ", 2: "big "}
    results = [
        reassembler.reassemble(inbound(A, proxy, f"p{n}", t, concat_ref="r1", concat_part=n,
                                       concat_total=3))
        for n, t in parts.items()
    ]
    assert [type(r).__name__ for r in results] == ["Pending", "Pending", "Reassembled"]
    assert [r.first for r in results[:2]] == [True, False]  # only the first schedules a flush
    assert results[2].text == "hello big world"
    assert results[2].parts == 3
    assert reassembler.flush_partial(results[0].group) is None  # nothing left to flush


def test_missing_part_is_relayed_with_a_marker_after_the_timeout(world):
    _, conversation = world.start()
    reassembler = world.services.reassembler
    proxy = conversation.participants[0].proxy_number
    pending = reassembler.reassemble(inbound(A, proxy, "q3", "end", concat_ref="r2",
                                             concat_part=3, concat_total=3))
    reassembler.reassemble(inbound(A, proxy, "q1", "start ", concat_ref="r2", concat_part=1,
                                   concat_total=3))
    partial = reassembler.flush_partial(pending.group)
    assert partial.text == "start […]end"
    assert partial.parts == 2
    (sent,) = world.handle(partial)
    assert sent.recipient == B
    assert reassembler.flush_partial(pending.group) is None  # flushed once
    assert world.services.counters.snapshot()["smsproxy.inbound.concat_incomplete"] == 1
