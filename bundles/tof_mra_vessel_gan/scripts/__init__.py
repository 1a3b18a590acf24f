"""Code of the tof_mra_vessel_gan bundle; ``common/`` is a synced copy of the repository's bundle_runtime."""
