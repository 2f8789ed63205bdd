"""Containment policy: order per type, targets, config overrides, auto_applicable."""

from __future__ import annotations

import msgspec
import pytest

from detector.config import RouteConfig
from detector.events import Recommendation
from detector.incidents.containment import recommend

MODEL_RB = {"kind": "model", "to_version": "m1"}


def actions(
    itype: str,
    cfg: RouteConfig | None = None,
    *,
    rollback: dict[str, str] | None = None,
    tool: str | None = None,
    severity: str = "medium",
) -> list[str]:
    recs = recommend(itype, "r", cfg or RouteConfig(), rollback=rollback, tool=tool, severity=severity)
    return [r["action"] for r in recs]


@pytest.mark.parametrize(
    ("itype", "kwargs", "cfg", "expected"),
    [
        # privacy: stop first, then the tool, then the sources
        ("access_privacy", {"tool": "crm"}, None, ["pause_feature", "disable_tool", "narrow_sources"]),
        ("access_privacy", {}, None, ["pause_feature", "narrow_sources"]),
        # bad output: rollback only when a change explains it
        (
            "bad_output",
            {"rollback": {"kind": "prompt", "to_version": "p1"}},
            None,
            ["rollback", "draft_only", "manual_review"],
        ),
        ("bad_output", {}, None, ["draft_only", "manual_review"]),
        # tool failure: gates only for write-capable tools
        (
            "tool_failure",
            {"tool": "crm"},
            RouteConfig(write_tools=["crm"]),
            ["disable_tool", "draft_only", "manual_review"],
        ),
        ("tool_failure", {"tool": "search"}, RouteConfig(write_tools=["crm"]), ["disable_tool"]),
        (
            "retrieval_failure",
            {"rollback": {"kind": "source_index", "to_version": "i1"}},
            None,
            ["rollback", "narrow_sources"],
        ),
        ("retrieval_failure", {}, None, ["narrow_sources"]),
        ("cost", {"rollback": MODEL_RB}, None, ["rate_limit", "pause_feature", "rollback"]),
        ("cost", {}, None, ["rate_limit", "pause_feature"]),
        # performance: failover only with a fallback route
        (
            "performance",
            {"rollback": MODEL_RB},
            RouteConfig(fallback_route="fb"),
            ["failover_route", "rate_limit", "rollback"],
        ),
        ("performance", {}, None, ["rate_limit"]),
    ],
)
def test_default_order_per_type(
    itype: str, kwargs: dict, cfg: RouteConfig | None, expected: list[str]
) -> None:
    """Each type's default recommendations come in the documented priority order."""
    assert actions(itype, cfg, **kwargs) == expected


def test_targets_and_wire_shape() -> None:
    """rollback carries {kind, to_version}, disable_tool the tool name, failover the fallback route."""
    cfg = RouteConfig(fallback_route="chat.small")
    recs = recommend("performance", "chat", cfg, rollback=MODEL_RB, tool=None, severity="high")
    assert recs[0]["target"] == "chat.small"
    assert recs[2]["target"] == MODEL_RB
    recs += recommend("tool_failure", "r", RouteConfig(), rollback=None, tool="crm", severity="low")
    assert recs[-1] == {
        "action": "disable_tool",
        "target": "crm",
        "rationale": recs[-1]["rationale"],
        "auto_applicable": False,
    }
    for r in recs:
        msgspec.convert(r, Recommendation)
        assert r["rationale"] and len(r["rationale"]) < 200


def test_rollback_without_target_is_dropped() -> None:
    """A rollback never appears without a complete target."""
    assert "rollback" not in actions("bad_output", rollback={"kind": "prompt", "to_version": ""})
    assert "rollback" not in actions("bad_output", rollback=None)


def test_config_overrides_order_and_list() -> None:
    """route_cfg.containment[type] replaces the default list and keeps its order, unreordered by severity."""
    cfg = RouteConfig(
        customer_facing=True,
        containment={"bad_output": ["manual_review", "pause_feature", "rollback", "failover_route"]},
    )
    assert actions("bad_output", cfg, severity="critical") == ["manual_review", "pause_feature"]
    assert actions("bad_output", cfg, rollback={"kind": "prompt", "to_version": "p1"}) == [
        "manual_review",
        "pause_feature",
        "rollback",
    ]


def test_auto_applicable_only_when_listed() -> None:
    """auto_applicable is true only for actions in auto_actions; pause on customer-facing needs opting in."""
    cfg = RouteConfig(customer_facing=True, auto_actions=["rate_limit"])
    recs = recommend("cost", "r", cfg, rollback=None, tool=None, severity="high")
    assert [(r["action"], r["auto_applicable"]) for r in recs] == [
        ("rate_limit", True),
        ("pause_feature", False),
    ]
    cfg = RouteConfig(customer_facing=True, auto_actions=["pause_feature"])
    recs = recommend("access_privacy", "r", cfg, rollback=None, tool=None, severity="critical")
    assert recs[0] == {**recs[0], "action": "pause_feature", "auto_applicable": True}


def test_customer_facing_high_severity_moves_gates_up() -> None:
    """Customer-facing at high/critical: draft_only/manual_review go before rollback, never before stops."""
    rb = {"kind": "prompt", "to_version": "p1"}
    cf = RouteConfig(customer_facing=True)
    assert actions("bad_output", cf, rollback=rb, severity="high") == [
        "draft_only",
        "manual_review",
        "rollback",
    ]
    assert actions("bad_output", cf, rollback=rb, severity="low") == [
        "rollback",
        "draft_only",
        "manual_review",
    ]
    assert actions("bad_output", RouteConfig(), rollback=rb, severity="critical") == [
        "rollback",
        "draft_only",
        "manual_review",
    ]
    cf_w = RouteConfig(customer_facing=True, write_tools=["crm"])
    assert actions(
        "tool_failure",
        cf_w,
        rollback={"kind": "tool", "to_version": "crm@1"},
        tool="crm",
        severity="critical",
    ) == ["disable_tool", "draft_only", "manual_review", "rollback"]
