"""``python -m tools``: each command imports only its own module, so the light ones start without torch or MONAI."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO_ROOT
from tools.cli import COMMANDS

#: Commands whose module must not import torch, MONAI or ignite at start-up (seconds before any work): they
#: import them inside the checks that need them, if at all. ``bench`` and ``dataset-bench`` measure networks.
LIGHT_COMMANDS = ["verify", "package", "download", "download-weights", "inspect", "demo-data", "sync-common"]

#: Imports each light command in turn, in one fresh interpreter, and names the first one that loads a heavy module.
PROBE = """
import sys
from tools.cli import _commands
for command in sys.argv[1:]:
    assert callable(_commands([command])[command])
    heavy = [m for m in ("torch", "monai", "ignite") if m in sys.modules]
    if heavy:
        print(command, "loads", heavy)
        break
else:
    print("none")
"""


def test_light_commands_start_without_torch_or_monai() -> None:
    assert set(LIGHT_COMMANDS) < set(COMMANDS)
    loaded = subprocess.run(
        [sys.executable, "-c", PROBE, *LIGHT_COMMANDS], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "none"
