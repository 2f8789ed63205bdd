"""`detector config explain ROUTE`: what applies to a route and where it comes from.

What these protect: the first matching glob in file order wins and the losing ones are named; a setting the
winning block leaves out shows as the built-in default; a flag shows as a flag; silences and receivers
that match are listed; a secret's value never appears; a bad config exits 2 naming the field.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """
[detectors]
persistence = 3

[kafka.security]
protocol = "SASL_SSL"
sasl_mechanism = "PLAIN"
sasl_username = "svc"
sasl_password = "canary-pw-81723"

[routes."support.reply"]
owner = "reply-team"
guardrails = { max_p95_ms = 9000 }

[routes."support.*"]
owner = "support"
tier = 1

[[silences]]
route = "support.*"
start = 2026-12-01T00:00:00Z
end = 2026-12-03T00:00:00Z

[[receivers]]
name = "pd"
kind = "pagerduty"
routes = ["payments.*"]
secret = "pd-canary-1234"

[[receivers]]
name = "am"
kind = "alertmanager"
url = "http://am:9093"
"""


def explain(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG, encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "detector.cli", "config", "explain", *args, "--config", str(cfg)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_the_first_matching_glob_wins_and_every_source_is_named(tmp_path: Path) -> None:
    out = explain(tmp_path, "support.reply", "--json", "--group-id", "g-flag")
    assert out.returncode == 0, out.stderr
    ex = json.loads(out.stdout)
    assert ex["winner"] == "support.reply" and ex["losing"] == ["support.*"]
    rows = {r["setting"]: (r["value"], r["source"]) for r in ex["rows"]}
    assert rows["route.owner"] == ("'reply-team'", 'config file [routes."support.reply"]')
    # the winning block does not set tier: the losing block's tier = 1 does not apply
    assert rows["route.tier"] == ("2", "built-in default (the route block does not set it)")
    assert rows["route.guardrails.max_p95_ms"] == ("9000.0", 'config file [routes."support.reply"]')
    assert rows["detectors.persistence"] == ("3", "config file [detectors]")
    assert rows["detectors.warmup_windows"] == ("60", "built-in default")
    assert rows["kafka.group_id"] == ("'g-flag'", "command-line flag")
    assert rows["kafka.security.sasl_password"][0] == "(secret)"
    assert [s[0] for s in ex["silences"]] == ["support.*"]
    assert [r.split()[0] for r in ex["receivers"]] == ["am"] and [r.split()[0] for r in ex["not_receivers"]] == ["pd"]


def test_the_table_names_the_winner_and_never_a_secret(tmp_path: Path) -> None:
    out = explain(tmp_path, "support.other")
    assert out.returncode == 0, out.stderr
    assert 'its settings come from [routes."support.*"]' in out.stdout
    assert "route.tier" in out.stdout and "delivered to: am" in out.stdout
    assert "canary-pw-81723" not in out.stdout + out.stderr and "pd-canary-1234" not in out.stdout + out.stderr
    none = explain(tmp_path, "billing.x")
    assert "no [routes] glob matches it" in none.stdout


def test_a_bad_config_exits_2_with_the_field_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[detectors]\npersistence = 0\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "detector.cli", "config", "explain", "r", "--config", str(bad)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "detectors.persistence" in out.stderr and out.stdout == ""
