"""The staff summary: route, impact, mode, meanwhile, owner, where to send examples; no free text."""

from __future__ import annotations

from detector.config import RouteConfig
from detector.incidents.containment import recommend
from detector.incidents.summary import summarize

CANARY = "CANARY-9d2f-review-reason"


def _incident(**over: object) -> dict:
    cfg = RouteConfig(owner="team-support", escalation="pager-support", fallback_route="support.small")
    inc = {
        "incident_id": "inc-42",
        "event": "opened",
        "route": "support.draft",
        "incident_type": "performance",
        "severity": "high",
        "status": "open",
        "blast_radius": {"requests": 1234, "tenants": 7, "share": 0.42},
        "recommendations": recommend(
            "performance", "support.draft", cfg, rollback=None, tool=None, severity="high"
        ),
        "owner": cfg.owner,
        "escalation": cfg.escalation,
        "evidence": {"request_ids": [], "changes": [{"actor": CANARY}]},
    }
    inc.update(over)
    return inc


def test_summary_mentions_route_owner_mode_and_examples() -> None:
    """The summary names the route, impact, the first recommended mode, the owner and the incident id."""
    s = summarize(_incident())
    assert "support.draft" in s and "[HIGH]" in s
    assert "1,234 requests, 7 tenants, 42% of the route's traffic" in s
    assert "Recommended mode: fail over to the route support.small (needs approval)" in s
    assert "Owner: team-support (escalation: pager-support)" in s
    assert "incident inc-42" in s
    assert "Meanwhile:" in s
    assert "\n" not in s


def test_keyword_form_matches_message_form() -> None:
    """The keyword form and the message form give the same text."""
    inc = _incident()
    kw = summarize(
        incident_id="inc-42",
        route="support.draft",
        incident_type="performance",
        severity="high",
        blast_radius=inc["blast_radius"],
        recommendations=inc["recommendations"],
        owner="team-support",
        escalation="pager-support",
        status="open",
    )
    assert kw == summarize(inc)


def test_no_owner_says_assign_one() -> None:
    """A route without owner says so and asks for one."""
    s = summarize(_incident(owner=None, escalation=None))
    assert "No owner configured — assign one." in s
    s = summarize(_incident(owner=None, escalation=None), RouteConfig(owner="team-x"))
    assert "Owner: team-x." in s


def test_summary_has_no_event_free_text() -> None:
    """Nothing from the evidence's or events' free text reaches the summary; ids are redacted."""
    s = summarize(_incident(route="eve@example.com"))
    assert CANARY not in s
    assert "eve@example.com" not in s and "[redacted:email]" in s


def test_type_specific_guidance_and_states() -> None:
    """Tool failures name the tool; resolved, stopped and recurrent incidents say so."""
    recs = recommend("tool_failure", "r", RouteConfig(), rollback=None, tool="crm", severity="low")
    s = summarize(_incident(incident_type="tool_failure", recommendations=recs))
    assert "calls to the tool crm are failing" in s and "disable the tool crm" in s
    s = summarize(_incident(event="resolved", status="resolved"), stopped=True, recurrence=True)
    assert "traffic has stopped" in s and "resolved" in s and "recurs" in s
    assert "Updates follow when it changes (at most every 15 min)" in summarize(_incident(), next_update_s=900)
    assert "No containment is recommended yet" in summarize(_incident(recommendations=[]))


def test_a_resolved_summary_does_not_read_as_a_live_incident() -> None:
    """Once resolved, staff are not told to keep a tool disabled as if the incident were live: the summary
    says what was recommended and that restoring needs approval (issue 8, item 9)."""
    from detector.incidents.summary import summarize

    inc = {"incident_id": "i1", "route": "crm.update", "incident_type": "tool_failure", "severity": "high",
           "event": "resolved", "status": "resolved", "blast_radius": {"requests": 3, "tenants": 1, "share": 0.1},
           "recommendations": [{"action": "disable_tool", "target": "crm.write", "rationale": "x",
                                "auto_applicable": False}],
           "owner": "crm-team", "escalation": None}
    text = summarize(inc)
    assert "Meanwhile" not in text and "Recommended mode" not in text
    assert "While it was open the recommendation was" in text and "approval" in text
    live = summarize({**inc, "event": "opened", "status": "open"})
    assert "Meanwhile: do actions by hand" in live
