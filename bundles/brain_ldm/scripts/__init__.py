"""Code of the brain_ldm bundle; ``common/`` is a synced copy of the repository's bundle_runtime."""
