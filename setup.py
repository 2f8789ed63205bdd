"""Build: the hot path compiled with mypyc where it can be (detector/compiled.py lists the modules), pure
Python where it cannot. The metadata is in pyproject.toml.

Set DETECTOR_PURE_PYTHON=1 to install without compiling. A compiler that fails leaves the sources to run:
each extension is optional, and without a fresh record of the build the package runs its sources.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import tempfile
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
plan = runpy.run_path(str(HERE / "detector" / "compiled.py"))  # the list and the digests, stdlib only
record = HERE / "detector" / plan["RECORD"]
record.unlink(missing_ok=True)  # no record: whatever extensions are left from an earlier build go unused

ext_modules = []
if not os.environ.get(plan["PURE_ENV"]):
    try:
        from mypyc.build import mypycify
    except ImportError:  # a build without mypy: pure Python
        mypycify = None
    if mypycify is not None:
        files = [str(plan["source_path"](m).relative_to(HERE)) for m in plan["MODULES"]]
        # The build environment has mypy and pydantic (for its plugin), not the other dependencies: what
        # they export is typed Any here (strictness is for `mypy --strict detector`, which CI runs).
        with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as cfg:
            cfg.write("[mypy]\nplugins = pydantic.mypy\nignore_missing_imports = True\n")
        try:
            ext_modules = mypycify(["--config-file", cfg.name, *files], opt_level="3", group_name=plan["GROUP"])
        except (Exception, SystemExit) as err:  # mypyc refused the code (it exits on a type error)
            print(f"setup.py: not compiled, the sources will run (mypyc: {err!r})", file=sys.stderr)
            ext_modules = []
        finally:
            os.unlink(cfg.name)
        for ext in ext_modules:
            ext.optional = True  # a failed C compile is a warning, and the sources run (no record below)
        if ext_modules:
            record.write_text(json.dumps(plan["digests"](), indent=1, sort_keys=True) + "\n")

setup(ext_modules=ext_modules)
