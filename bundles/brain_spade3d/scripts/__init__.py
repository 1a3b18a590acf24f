"""Code of the brain_spade3d bundle; ``common/`` is a synced copy of the repository's bundle_runtime."""
