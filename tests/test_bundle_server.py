"""The tests' fork server: a forked run behaves like ``python -m <module>`` in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import BundleServer, bundle_env

PROBE = """
import json, os, sys
import numpy
if os.environ.get("PROBE_FAIL"):
    raise ValueError("probe asked to fail")
if os.environ.get("PROBE_SLEEP"):
    import time
    time.sleep(float(os.environ["PROBE_SLEEP"]))
print(json.dumps({"cwd": os.getcwd(), "argv": sys.argv[1:], "path0": sys.path[0], "x": os.environ.get("PROBE_X"),
                  "draw": float(numpy.random.random()), "main": __name__, "scripts": "scripts" in sys.modules}))
"""


@pytest.fixture(scope="module")
def server() -> BundleServer:
    server = BundleServer.shared()
    if server is None:
        pytest.skip("fork server off (SYNTHBRAIN_TESTS_FORK=0 or no os.fork)")
    return server


def _probe(server: BundleServer, folder: Path, **env: str) -> subprocess.CompletedProcess:
    (folder / "probe_module.py").write_text(PROBE)
    return server.run("probe_module", ["run", "--k", "1"], folder, {**bundle_env(), **env}, timeout=60)


def _fresh(folder: Path, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "probe_module", "run", "--k", "1"]
    return subprocess.run(command, cwd=folder, env={**bundle_env(), **env}, capture_output=True, text=True, timeout=120)


def test_a_forked_run_sees_what_a_fresh_interpreter_sees(server: BundleServer, tmp_path: Path) -> None:
    forked = _probe(server, tmp_path, PROBE_X="seen")
    fresh = _fresh(tmp_path, PROBE_X="seen")
    assert forked.returncode == fresh.returncode == 0, forked.stderr
    seen, expected = json.loads(forked.stdout), json.loads(fresh.stdout)
    assert {k: v for k, v in seen.items() if k != "draw"} == {k: v for k, v in expected.items() if k != "draw"}
    assert seen["cwd"] == str(tmp_path) and seen["argv"] == ["run", "--k", "1"] and seen["x"] == "seen"
    assert seen["main"] == "__main__" and seen["scripts"] is False


def test_each_forked_run_draws_fresh_random_numbers(server: BundleServer, tmp_path: Path) -> None:
    draws = {json.loads(_probe(server, tmp_path).stdout)["draw"] for _ in range(3)}
    assert len(draws) == 3


def test_an_uncaught_error_exits_1_with_its_traceback_like_a_real_run(server: BundleServer, tmp_path: Path) -> None:
    forked, fresh = _probe(server, tmp_path, PROBE_FAIL="1"), _fresh(tmp_path, PROBE_FAIL="1")
    assert forked.returncode == fresh.returncode == 1
    assert "Traceback" in forked.stderr and "ValueError: probe asked to fail" in forked.stderr and forked.stdout == ""


def test_a_run_past_its_timeout_is_killed_and_the_server_goes_on(server: BundleServer, tmp_path: Path) -> None:
    (tmp_path / "probe_module.py").write_text(PROBE)
    with pytest.raises(subprocess.TimeoutExpired):
        server.run("probe_module", [], tmp_path, {**bundle_env(), "PROBE_SLEEP": "30"}, timeout=1)
    assert _probe(server, tmp_path).returncode == 0


def test_runs_whose_import_time_environment_differs_are_not_forked(server: BundleServer) -> None:
    assert server.accepts(bundle_env())
    assert not server.accepts({**bundle_env(), "OMP_NUM_THREADS": "7"})
    assert not server.accepts({**bundle_env(), "MONAI_DEBUG": str(os.getpid())})
