"""State of the cross-route and canary parts: what survives a checkpoint, and what a shared book keeps.

What they protect: a group book shared by the partitions of one process keeps a group alive while any
member is open (an engine knows only its own open incidents), and a partition restoring its older copy
never replaces the live group; the provider board and a canary comparison restored from their snapshots
judge exactly as the live ones; the board does not see "elsewhere" in a route's own errors.
"""

from __future__ import annotations

import json

from detector.detectors.canary import CanaryWatch
from detector.events import ChangeEvent, ErrorEvent, UsageEvent
from detector.incidents.groups import GROUP_SPAN_MS, GroupBook, ProviderBoard
from detector.windows.aggregate import WindowAggregate

MIN = 60_000


def _win(route: str, i: int, k: int, n: int = 50, provider: str = "acme") -> WindowAggregate:
    w = WindowAggregate(route, i * MIN, (i + 1) * MIN)
    w.providers = {provider: [n, k]}
    return w


def test_a_group_lives_while_a_member_is_open_and_a_restore_keeps_the_live_copy() -> None:
    book = GroupBook()
    gid = book.join("inc-a", "a", ("provider", "acme"), 0)
    assert book.join("inc-b", "b", ("provider", "acme"), 5 * MIN) == gid
    older = json.loads(json.dumps(book.snapshot()))  # a partition's checkpoint, taken now
    assert book.join("inc-c", "c", ("provider", "acme"), 6 * MIN) == gid
    book.restore(older)  # that partition restarts and restores its copy: the live group stays as it is
    assert book.public(gid) is not None and book.public(gid)["routes"] == ["a", "b", "c"]  # type: ignore[index]
    book.closed("inc-a")
    book.closed("inc-b")
    book.expire(6 * MIN + 3 * GROUP_SPAN_MS)
    assert book.public(gid) is not None  # inc-c is still open (in whichever engine holds it)
    book.closed("inc-c")
    book.expire(6 * MIN + 3 * GROUP_SPAN_MS)
    assert book.public(gid) is None and book.members(gid) == {}
    # a fresh book restored from a snapshot has the group
    fresh = GroupBook()
    fresh.restore(older)
    assert fresh.public(gid) == {"group_id": gid, "cause": {"kind": "provider", "value": "acme"},
                                 "routes": ["a", "b"]}


def test_the_board_restored_judges_as_the_live_one_and_ignores_the_route_itself() -> None:
    board = ProviderBoard()
    for i in range(200):
        for r in ("a", "b", "c"):
            board.observe(_win(r, i, 0))
    board.observe(_win("a", 200, 25))  # only route a fails
    assert not board.elsewhere("acme", "a", 199 * MIN, 201 * MIN)
    assert board.elsewhere("acme", "b", 199 * MIN, 201 * MIN)  # from b's side, a is elsewhere
    copy = ProviderBoard()
    copy.restore(json.loads(json.dumps(board.snapshot())))
    for route in ("a", "b"):
        assert copy.elsewhere("acme", route, 199 * MIN, 201 * MIN) == board.elsewhere("acme", route, 199 * MIN,
                                                                                       201 * MIN)
    assert copy.rate("acme", "b") == board.rate("acme", "b")


def _canary_window(i: int, change: bool = False) -> WindowAggregate:
    w = WindowAggregate("r", i * MIN, (i + 1) * MIN)
    if change:
        w.add(ChangeEvent(event_id="c", ts=0.0, route="r", change_kind="model", from_version="m1",
                          to_version="m2"), i * MIN)
    for k in range(20):
        model = "m2" if k < 4 else "m1"
        w.add(UsageEvent(event_id=f"u{i}.{k}", ts=0.0, route="r", model=model))
        if model == "m2" and (i + k) % 3 == 0:
            w.add(ErrorEvent(event_id=f"e{i}.{k}", ts=0.0, route="r", model=model, error_class="timeout"))
    return w


def test_a_canary_comparison_restored_mid_way_judges_as_the_live_one() -> None:
    live = CanaryWatch()
    for i in range(30):  # the route's history before the change
        live.on_window(_plain(i))
    live.on_window(_canary_window(30, change=True))
    live.on_window(_canary_window(31))
    restored = CanaryWatch.from_dict(json.loads(json.dumps(live.to_dict())))
    for i in range(32, 40):
        a, b = live.on_window(_canary_window(i)), restored.on_window(_canary_window(i))
        assert a == b
    assert any(r.anomalous for r in a.values()) and live.target() == {"kind": "model", "to_version": "m1"}


def _plain(i: int) -> WindowAggregate:
    w = WindowAggregate("r", i * MIN, (i + 1) * MIN)
    for k in range(20):
        w.add(UsageEvent(event_id=f"p{i}.{k}", ts=0.0, route="r", model="m1"))
    return w
