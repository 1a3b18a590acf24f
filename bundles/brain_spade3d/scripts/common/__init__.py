# Generated copy of bundle_runtime/__init__.py: edit the source, then run `python -m tools sync-common`.
"""Code shared by several bundles.

This folder is the single source. ``python -m tools sync-common`` copies the modules each bundle
uses (named in its scripts or configs, and what those import) into ``bundles/<name>/scripts/common/``
so that each bundle runs standalone with only its declared packages;
``tests/tools/test_sync_common.py`` fails when a copy drifts from this source.
"""
