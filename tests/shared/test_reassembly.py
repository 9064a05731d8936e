"""Multi-part reassembly on fakeredis."""

import pytest

from shared.reassembly import Duplicate, LatePart, Pending, Reassembled
from shared.vonage_gateway import sms_parts
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
    assert reassembler.flush_partial(results[0].group, results[0].instance) is None


def test_missing_part_is_relayed_with_a_marker_after_the_timeout(world):
    _, conversation = world.start()
    reassembler = world.services.reassembler
    proxy = conversation.participants[0].proxy_number
    pending = reassembler.reassemble(inbound(A, proxy, "q3", "end", concat_ref="r2",
                                             concat_part=3, concat_total=3))
    reassembler.reassemble(inbound(A, proxy, "q1", "start ", concat_ref="r2", concat_part=1,
                                   concat_total=3))
    partial = reassembler.flush_partial(pending.group, pending.instance)
    assert partial.text == "start […]end"
    assert partial.parts == 2
    (sent,) = world.handle(partial)
    assert sent.recipient == B
    assert reassembler.flush_partial(pending.group, pending.instance) is None  # flushed once
    assert world.services.counters.snapshot()["smsproxy.inbound.concat_incomplete"] == 1


def parts(proxy, ref, texts, prefix):
    """One webhook per part of a message, in order."""
    return [inbound(A, proxy, f"{prefix}{n}", t, concat_ref=ref, concat_part=n,
                    concat_total=len(texts)) for n, t in enumerate(texts, start=1)]


def test_a_wrapped_concat_ref_is_a_new_message(world):
    _, conversation = world.start()
    reassembler = world.services.reassembler
    proxy = conversation.participants[0].proxy_number
    first = [reassembler.reassemble(p) for p in parts(proxy, "7", ["one ", "two"], "a")][-1]
    # later, the handset's 8-bit counter has come round to 7 again
    second = [reassembler.reassemble(p) for p in parts(proxy, "7", ["three ", "four"], "b")][-1]
    assert isinstance(first, Reassembled) and isinstance(second, Reassembled)
    assert first.message_id != second.message_id
    assert [s.text for s in world.handle(first) + world.handle(second)] == [
        "one two", "three four"]


def test_a_redelivered_part_of_a_finished_message_is_a_duplicate(world):
    _, conversation = world.start()
    reassembler = world.services.reassembler
    proxy = conversation.participants[0].proxy_number
    webhooks = parts(proxy, "9", ["x", "y"], "c")
    whole = [reassembler.reassemble(part) for part in webhooks][-1]
    # until its relay is recorded, a part run again gets the whole message again...
    again = reassembler.reassemble(webhooks[1])
    assert isinstance(again, Reassembled) and again.message_id == whole.message_id
    assert again.text == "xy"
    world.handle(again)
    # ...and once it is, nothing
    assert isinstance(reassembler.reassemble(webhooks[0]), Duplicate)
    assert isinstance(reassembler.reassemble(webhooks[1]), Duplicate)
    pending = parts(proxy, "10", ["x", "y"], "d")[0]
    assert isinstance(reassembler.reassemble(pending), Pending)
    assert isinstance(reassembler.reassemble(pending), Duplicate)  # redelivered while open


def test_a_part_after_its_message_was_flushed_is_recorded_not_relayed(world):
    _, conversation = world.start()
    reassembler, services = world.services.reassembler, world.services
    proxy = conversation.participants[0].proxy_number
    first, second, third = parts(proxy, "11", ["a", "b", "c"], "e")
    opened = reassembler.reassemble(first)
    reassembler.reassemble(third)
    partial = reassembler.flush_partial(opened.group, opened.instance)
    world.handle(partial)
    late = reassembler.reassemble(second)
    assert isinstance(late, LatePart) and late.whole_message_id == partial.message_id
    services.inbound.record_late(late)
    trail = services.messages.trail(conversation.id)
    assert [(e.record, e.id) for e in trail] == [
        ("in", partial.message_id), ("out", f"relay-{partial.message_id}"), ("in", "e2")]
    assert trail[-1].late_part_of == partial.message_id
    assert services.counters.snapshot()["smsproxy.inbound.concat_late"] == 1
    assert isinstance(reassembler.reassemble(second), Duplicate)  # the late part, redelivered


def test_a_flush_run_again_before_its_relay_was_recorded_gets_the_parts_again(world):
    _, conversation = world.start()
    reassembler = world.services.reassembler
    proxy = conversation.participants[0].proxy_number
    opened = reassembler.reassemble(parts(proxy, "12", ["a", "b"], "f")[0])
    first = reassembler.flush_partial(opened.group, opened.instance)
    again = reassembler.flush_partial(opened.group, opened.instance)
    assert again == first and first.text == "a[…]"
    world.handle(again)
    assert reassembler.flush_partial(opened.group, opened.instance) is None


@pytest.mark.parametrize(("present", "total", "expected"), [
    ({1: "a"}, 255, "a[…]"),
    ({255: "z"}, 255, "[…]z"),
    ({1: "a", 5: "e"}, 9, "a[…]e[…]"),
    ({2: "b", 3: "c"}, 4, "[…]bc[…]"),
])
def test_each_run_of_missing_parts_becomes_one_marker(world, present, total, expected):
    _, conversation = world.start()
    reassembler = world.services.reassembler
    proxy = conversation.participants[0].proxy_number
    pending = None
    for part, text in present.items():
        pending = reassembler.reassemble(inbound(A, proxy, f"x{part}", text, concat_ref="r9",
                                                 concat_part=part, concat_total=total))
    partial = reassembler.flush_partial(pending.group, pending.instance)
    assert partial.text == expected
    assert partial.parts == len(present)


def test_one_part_claiming_255_is_relayed_as_one_sms(world):
    _, conversation = world.start()
    reassembler = world.services.reassembler
    proxy = conversation.participants[0].proxy_number
    pending = reassembler.reassemble(inbound(A, proxy, "y1", "hi", concat_ref="r8",
                                             concat_part=1, concat_total=255))
    (sent,) = world.handle(reassembler.flush_partial(pending.group, pending.instance))
    assert sent.text == "hi[…]" and sms_parts(sent.text) == 1
