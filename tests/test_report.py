"""`detector replay --report DIR [--compare CONFIG_B]`: the HTML report.

What these protect: the report is one self-contained file (no network, no external script or style), holds
the replay's incidents with their recommendations, a summary and per-route plots; with --compare it names
the incidents the other config removes or adds; opened in a real headless browser (Debian chromium) it
renders its plots without a script error, and a screenshot is kept in the test's temp dir.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from detector.demo.run import BACKFILL_MIN
from detector.demo.traffic import Traffic

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    tmp = tmp_path_factory.mktemp("report")
    t = Traffic(4, 1_767_225_600_000, first_min=BACKFILL_MIN)
    events = tmp / "events.jsonl"
    with events.open("w", encoding="utf-8") as fh:
        for k in range(BACKFILL_MIN + 70):
            for e in t.minute(k):
                fh.write(json.dumps(e) + "\n")
    a = tmp / "a.toml"
    a.write_text("[detectors]\nwarmup_windows = 30\n[windows]\nallowed_lateness_s = 60\n", encoding="utf-8")
    b = tmp / "b.toml"  # a warm-up longer than the file: config B opens nothing
    b.write_text("[detectors]\nwarmup_windows = 500\n[windows]\nallowed_lateness_s = 60\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "detector.cli", "replay", "--config", str(a), "--events",
                          str(events), "--out", str(tmp / "inc.jsonl"), "--report", str(tmp / "rep"),
                          "--compare", str(b)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return tmp / "rep" / "report.html", tmp / "inc.jsonl", out.stderr


def test_the_report_is_one_self_contained_file_with_the_incidents(report: tuple[Path, Path, str]) -> None:
    page, incidents, stderr = report
    text = page.read_text(encoding="utf-8")
    assert "report written to" in stderr and "events read" in stderr  # progress and summary on stderr
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", text)  # nothing fetched: works from a file
    assert "uPlot" in text and page.stat().st_size < 1_000_000
    opened = [json.loads(x) for x in incidents.read_text(encoding="utf-8").splitlines()]
    opened = [m for m in opened if m["event"] == "opened"]
    assert len(opened) >= 3
    for m in opened:
        assert m["incident_id"] in text
    assert "rollback prompt → reply-v7" in text
    assert "0 only with b.toml (it adds them)" in text and f"{len(opened)} only with this config" in text
    for route in ("support.reply", "crm.update", "docs.search"):
        assert f"data-route='{route}'" in text


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package chromium)")
def test_the_report_renders_in_a_real_browser(report: tuple[Path, Path, str], tmp_path: Path) -> None:
    page, _, _ = report
    assert CHROMIUM is not None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body and 'data-ready="1"' in body.group(1), dom[:2000]
    drawn = int(re.search(r'data-rendered="(\d+)"', body.group(1)).group(1))  # type: ignore[union-attr]
    assert drawn >= 3  # the routes with incidents are open and drawn
    assert re.search(r'<div id="errors">\s*</div>', dom), "the page reported a script error"
    assert dom.count("<canvas") >= drawn
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1300,2000", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package chromium)")
def test_route_names_that_are_javascript_or_html_render_safely(tmp_path: Path) -> None:
    """Routes named after JavaScript object members or holding markup (found by an adversarial review: a
    route named `constructor` broke the page's script)."""
    assert CHROMIUM is not None
    events = tmp_path / "e.jsonl"
    names = ["constructor", "__proto__", "toString", "<b>x</b>&'\""]
    with events.open("w", encoding="utf-8") as fh:
        for i in range(40 * 60):
            fh.write(json.dumps({"event_id": f"e{i}", "type": "usage", "ts": 1_767_225_600_000 + i * 1000,
                                 "route": names[i % len(names)]}) + "\n")
    out = subprocess.run([sys.executable, "-m", "detector.cli", "replay", "--events", str(events), "--out",
                          str(tmp_path / "i.jsonl"), "--report", str(tmp_path / "rep")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    page = tmp_path / "rep" / "report.html"
    text = page.read_text(encoding="utf-8")
    assert "<b>x</b>" not in text
    for name in names[:3]:  # open them so the plots are drawn
        text = text.replace(f"data-route='{name}'>", f"data-route='{name}' open>")
    page.write_text(text, encoding="utf-8")
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert 'data-ready="1"' in dom and re.search(r'<div id="errors">\s*</div>', dom), dom[:3000]


def test_report_and_format_need_a_file_not_stdin(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "detector.cli", "replay", "--events", "-", "--out",
                          str(tmp_path / "i.jsonl"), "--report", str(tmp_path / "rep")], cwd=ROOT, input="",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "need an events file" in out.stderr and not (tmp_path / "rep").exists()
