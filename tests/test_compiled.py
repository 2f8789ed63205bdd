"""The compiled hot path (detector/compiled.py, setup.py).

What these protect: the compiled modules decide exactly as their sources do (the incidents and the learned
state of a fleet scenario are byte-identical between this process and a run of the sources); their
doctests still run (mypyc keeps no docstrings, so they run on the sources here); a source edited after the
build, or DETECTOR_PURE_PYTHON, makes the whole set run from source; and the classes that snapshots read
field by field list every field they hold.
"""

from __future__ import annotations

import doctest
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from detector import compiled
from detector.bench.scenarios.fleet_generate import generate_fleet
from detector.config import Config
from detector.detectors.base import _REGISTRY
from detector.incidents.engine import _OPEN_FIELDS, _Open
from detector.replay import replay_lines

COMPILED = compiled.active()
needs_build = pytest.mark.skipif(not COMPILED, reason="the compiled build is not installed here (pure Python): "
                                                      "pip install -e . with a C compiler builds it")


def test_the_install_compiled_where_a_compiler_is_present() -> None:
    """A build that fell back to pure Python (mypyc refused the code, or could not see a dependency's types)
    says so only in pip's log: this makes it a failure wherever a C compiler is present."""
    if os.environ.get(compiled.PURE_ENV):
        pytest.skip(f"{compiled.PURE_ENV} is set")
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler here: the sources run")
    record = Path(compiled.__file__).parent / compiled.RECORD
    if record.exists() and not compiled.fresh():
        pytest.skip("a compiled module's source changed since the build: the sources run until pip install -e .")
    assert COMPILED, "pip install -e . ran without compiling: its log (pip -v) has setup.py's reason"


@pytest.mark.parametrize("module", compiled.MODULES)
def test_the_doctests_of_a_compiled_module_pass_on_its_source(module: str) -> None:
    if not COMPILED:
        pytest.skip("pure Python: pytest's collection runs these doctests")
    registry = dict(_REGISTRY)
    try:
        mod = compiled.load_source(module)  # its detector classes register themselves: undone below
    finally:
        _REGISTRY.clear()
        _REGISTRY.update(registry)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = [t for t in finder.find(mod, module) if t.examples]
    if not tests:
        pytest.skip(f"{module} has no doctests")
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {module}"


def _lines(seed: int = 7) -> list[bytes]:
    scenario = generate_fleet(seed, days=1, routes=10)
    return [json.dumps(e, separators=(",", ":")).encode() for e in scenario.events]


PURE_REPLAY = """
import json, sys
from detector import compiled
from detector.config import Config
from detector.detectors.base import _REGISTRY
from detector.replay import replay_lines
assert not compiled.active()
lines = [bytes.fromhex(x) for x in json.load(sys.stdin)]
res = replay_lines(lines, Config())
print(json.dumps({"incidents": res.incidents, "detectors": res.pipeline.detectors.snapshot(),
                  "engine": res.pipeline.incidents.snapshot(), "stats": res.stats.as_dict()}, sort_keys=True))
"""


@needs_build
def test_the_compiled_set_decides_as_its_sources_on_a_fleet_scenario() -> None:
    lines = _lines()
    res = replay_lines(lines, Config())
    here: dict[str, Any] = json.loads(json.dumps(
        {"incidents": res.incidents, "detectors": res.pipeline.detectors.snapshot(),
         "engine": res.pipeline.incidents.snapshot(), "stats": res.stats.as_dict()}, sort_keys=True))
    env = {**os.environ, compiled.PURE_ENV: "1"}
    run = subprocess.run([sys.executable, "-c", PURE_REPLAY], input=json.dumps([x.hex() for x in lines]),
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    pure = json.loads(run.stdout)
    assert sum(1 for i in here["incidents"] if i["event"] == "opened") >= 2  # the scenario has something to find
    assert here["incidents"] == pure["incidents"]
    assert here["detectors"] == pure["detectors"]
    assert here["engine"] == pure["engine"]
    assert here["stats"] == pure["stats"]


def test_the_record_of_the_build_is_fresh_only_while_every_source_matches(tmp_path: Path) -> None:
    assert not compiled.fresh(tmp_path)  # no record: not fresh (the sources run)
    record = tmp_path / compiled.RECORD
    record.write_text(json.dumps(compiled.digests()))
    assert compiled.fresh(tmp_path)
    stale = compiled.digests()
    stale["detector.windows.windower"] = "0" * 64  # as if windower.py changed after the build
    record.write_text(json.dumps(stale))
    assert not compiled.fresh(tmp_path)
    record.write_text(json.dumps({m: d for m, d in compiled.digests().items() if m != "detector.pipeline"}))
    assert not compiled.fresh(tmp_path)  # a module missing from the record
    record.write_text("not json")
    assert not compiled.fresh(tmp_path)


@needs_build
def test_pure_python_env_runs_the_sources() -> None:
    code = "from detector import compiled; import detector.windows.windower as w; print(compiled.active(), w.__file__)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, compiled.PURE_ENV: "1"})
    active, file = run.stdout.split()
    assert active == "False" and file.endswith("windower.py")


def test_an_open_incident_checkpoints_every_field_it_holds() -> None:
    o = _Open("r", "performance", 0, 60_000)
    held = set(getattr(o, "__dict__", None) or type(o).__mypyc_attrs__) - {"__dict__"}  # type: ignore[attr-defined]
    assert held == set(_OPEN_FIELDS) | {"windows", "tenants"}
    o.cause, o.rollback, o.severity = ["provider", "p"], {"kind": "model", "to_version": "m1"}, "high"
    back = _Open.from_dict(json.loads(json.dumps(o.to_dict())))
    assert back.to_dict() == o.to_dict()
