"""``tools inspect``: every call target and expression of a bundle is listed, and none of them is run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tools import REPO_ROOT


def test_targets_and_expressions_are_listed_without_being_run(tiny_bundle: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    inference = tiny_bundle / "configs" / "inference.json"
    config = json.loads(inference.read_text())
    config["payload"] = {"_target_": "os.system", "command": f"touch {marker}"}
    config["hidden"] = f"$__import__('pathlib').Path('{marker}').touch()"
    inference.write_text(json.dumps(config))

    command = [sys.executable, "-m", "tools", "inspect", str(tiny_bundle)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "! configs/inference.json  payload  _target_  os.system" in lines
    assert f"  configs/inference.json  hidden  eval  __import__('pathlib').Path('{marker}').touch()" in lines
    assert "! configs/inference.json  writer  _target_  scripts.writer.ShapeWriter" in lines  # the bundle's own code
    assert "  configs/inference.json  network_def  _target_  UNet" in lines  # a MONAI component is not flagged
    assert "  configs/inference.json  imports#1  eval  import scripts" in lines
    assert "  python file  scripts/writer.py" in lines
    assert lines[-1].endswith("2 _target_(s) outside monai/torch/ignite marked '!'")
    assert not marker.exists()
