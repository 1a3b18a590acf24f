"""Command-line tools and shared code of the synthbrain-zoo bundle collection."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLES_DIR = REPO_ROOT / "bundles"
