"""The diagram's geometry and words (pure functions over plain rows: no database)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from scenarios import diagram
from scenarios.diagram import CARD_H, CARD_W, GAP_X, GAP_Y, PAD


@dataclass
class S:
    pk: int
    key: str
    kind: str
    col: int
    row: int
    config: dict[str, Any] = field(default_factory=dict)
    title: str = ""


@dataclass
class T:
    source_id: int
    exit: str
    target_id: int


def test_it_places_cards_by_their_grid_cell():
    d = diagram.build([S(1, "s1", "entry.api", 0, 0), S(2, "s2", "exit", 2, 1)], [])
    s1, s2 = d.by_key["s1"], d.by_key["s2"]
    assert (s1.x, s1.y) == (PAD, PAD)
    assert (s2.x, s2.y) == (PAD + 2 * (CARD_W + GAP_X), PAD + CARD_H + GAP_Y)
    assert d.width >= s2.x + CARD_W and d.height >= s2.y + CARD_H


def test_two_steps_in_one_cell_are_drawn_one_below_the_other():
    d = diagram.build([S(1, "s1", "entry.api", 1, 0), S(2, "s2", "exit", 1, 0)], [])
    assert (d.by_key["s1"].row, d.by_key["s2"].row) == (0, 1)
    assert d.by_key["s1"].y != d.by_key["s2"].y


def test_exits_leave_from_the_right_edge_spread_over_the_height_with_their_labels():
    cond = S(1, "s1", "condition", 0, 0, {"test": "message", "step": "s0", "what": "opened"})
    d = diagram.build([cond, S(2, "s2", "exit", 1, 0), S(3, "s3", "exit", 1, 1)],
                      [T(1, "yes", 2), T(1, "no", 3)])
    ports = d.by_key["s1"].ports
    assert [p.exit for p in ports] == ["yes", "no"]
    assert all(p.x == PAD + CARD_W for p in ports)
    assert PAD < ports[0].y < ports[1].y < PAD + CARD_H
    assert {(e.exit, e.label) for e in d.edges} == {("yes", "yes"), ("no", "no")}
    # A forward connector is a curve ending at the target's left edge, at mid height.
    yes = next(e for e in d.edges if e.exit == "yes")
    assert yes.d.startswith("M") and " C" in yes.d and not yes.back
    assert yes.d.endswith(f"{d.by_key['s2'].x - 6},{PAD + CARD_H // 2}")


def test_a_loop_back_runs_below_both_cards():
    steps = [S(1, "s1", "wait", 0, 0, {"mode": "duration", "seconds": 60}), S(2, "s2", "wait", 1, 0,
                                                                               {"mode": "duration", "seconds": 60})]
    d = diagram.build(steps, [T(1, "next", 2), T(2, "next", 1)])
    back = next(e for e in d.edges if e.source == "s2")
    assert back.back and " V" in back.d
    below = float(back.d.split(" V")[1].split(" ")[0])
    assert below > PAD + CARD_H  # under the cards, not across them


def test_a_connector_within_a_column_enters_the_near_edge_of_the_target():
    steps = [S(1, "s1", "exit", 3, 0), S(2, "s2", "send", 3, 1), S(3, "s3", "send", 3, 2)]
    d = diagram.build(steps, [T(2, "next", 1)])
    (up,) = d.edges
    target = d.by_key["s1"]
    assert not up.back
    assert up.d.endswith(f"H{target.x + CARD_W // 2} V{target.y + CARD_H + 6}")  # into its bottom edge


def test_an_unconnected_exit_is_a_stub_and_a_split_labels_its_branches_with_weights():
    split = S(1, "s1", "split", 0, 0, {"branches": [{"exit": "a", "label": "A", "weight": 50},
                                                   {"exit": "b", "label": "B", "weight": 50}]})
    d = diagram.build([split, S(2, "s2", "exit", 1, 0)], [T(1, "a", 2)])
    assert [e.label for e in d.edges] == ["A · 50%"]
    assert [(p.step_key, p.exit, p.label) for p in d.stubs] == [("s1", "b", "B · 50%")]


def test_thirty_steps_make_a_wide_canvas_not_overlapping_cards():
    steps = [S(i, f"s{i}", "wait", i - 1, 0, {"mode": "duration", "seconds": 60}) for i in range(1, 31)]
    d = diagram.build(steps, [T(i, "next", i + 1) for i in range(1, 30)])
    xs = sorted(n.x for n in d.nodes)
    assert all(b - a >= CARD_W + GAP_X for a, b in itertools.pairwise(xs))
    assert d.width > 30 * CARD_W and len(d.edges) == 29


def test_free_cell_finds_the_first_empty_cell_below():
    steps = [S(1, "s1", "entry.api", 1, 0), S(2, "s2", "exit", 1, 1)]
    assert diagram.free_cell(steps, 1, 0) == (1, 2)
    assert diagram.free_cell(steps, 2, 0) == (2, 0)


def test_summaries_name_what_the_steps_refer_to():
    names = {"templates": {7: "Welcome"}, "segments": {3: "VIP"}, "resources": {2: "Shop news"}}
    assert diagram.step_summary("send", {"template_id": 7, "channel": "email"}, names) == "Welcome · email"
    assert diagram.step_summary("send", {"template_id": 99}, names).startswith("#99 (missing)")
    assert diagram.step_summary("wait", {"mode": "duration", "seconds": 172800}, names) == "Wait 2 days"
    assert diagram.step_summary("wait", {"mode": "time_of_day", "time": "09:00", "weekdays": [0, 4]}, names) == \
        "Until 09:00 local time on Mon, Fri"
    assert diagram.step_summary("wait_event", {"type": "order.placed", "timeout_seconds": 604800}, names) == \
        "order.placed or 7 days"
    assert diagram.step_summary("entry.subscription", {"resource_id": 2, "channel": "email"}, names) == \
        "Subscribes to Shop news by email"
    assert diagram.step_summary("condition", {"test": "segments", "conditions": {
        "type": "group", "op": "and", "items": [{"type": "segment", "segment": 3}]}}, names) == "Profile matches: in VIP"
    assert diagram.step_summary("update", {"values": {"customer_stage": "buyer"}}, names) == "Set customer_stage = buyer"
    assert diagram.step_summary("segment", {"segment_id": 3, "action": "remove"}, names) == "Remove from VIP"
