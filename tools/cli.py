"""``python -m tools``: verify, package, download bundles and their large files, and write the offline demo data."""

from __future__ import annotations

import sys

import fire


def sync_common(check: bool = False) -> None:
    """Copy bundle_runtime into every bundle's scripts/common; with --check, fail on drift instead."""
    from tools.sync_common import sync

    problems = sync(check=check)
    for line in problems:
        print(line, file=sys.stderr)
    if check and problems:
        raise SystemExit(1)
    print("copies up to date" if check else f"synced ({len(problems)} file(s) refreshed)")


def _commands() -> dict:
    from tools import bench, dataset_bench, demo_data, download, inspect_bundle, large_files, packaging, verify

    return {
        "bench": bench.bench,
        "verify": verify.verify_cli,
        "package": packaging.package_cli,
        "download": download.download_cli,
        "download-weights": large_files.download_weights_cli,
        "inspect": inspect_bundle.inspect_cli,
        "demo-data": demo_data.demo_data_cli,
        "sync-common": sync_common,
        "dataset-bench": dataset_bench.dataset_bench,
    }


def main() -> None:
    fire.Fire(_commands())


if __name__ == "__main__":
    main()
