"""The code stays ruff-clean (lint and format), so CI catches what a reviewer would otherwise have to."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT


@pytest.mark.parametrize("arguments", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_finds_nothing(arguments: list[str]):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *arguments], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
