"""Every bundle runs from an unrelated folder with ``--bundle_root``, and nothing on ``PYTHONPATH``.

MONAI 1.6.1 evaluates all ``$import`` lines of a config before its first other expression, and puts the bundle on
``sys.path`` only when ``run`` starts, after ``initialize`` has used ``scripts``. So each config's first
``initialize`` step, ``"$@bundle_scripts"``, runs ``scripts/common/bundle_path.py`` by its path under
``@bundle_root``, which puts the bundle first on ``sys.path`` and makes MONAI repeat its import pass. These tests
run the documented commands in a fresh folder, with the bundle on no ``PYTHONPATH`` entry (``tests.helpers``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from bundle_runtime import bundle_path
from bundle_runtime.bundle_path import CONFIG_ENTRY, put_bundle_first
from tests.helpers import BUNDLES_DIR, bundle_command, bundle_env, run_bundle

BUNDLES = ("brain_ldm", "brain_spade3d", "tof_mra_vessel_gan")
CONFIGS = sorted(path for bundle in BUNDLES for path in (BUNDLES_DIR / bundle / "configs").glob("*.json"))

#: Shipped weights at the smallest settings they accept (measured: 8-13 s per run on one CPU thread).
TINY_RUNS = {
    "brain_ldm": {"num_inference_steps": 2, "spatial_shape": [16, 24, 16], "resolution_mm": 8, "progress": False},
    "brain_spade3d": {"num_inference_steps": 2, "progress": False},
    "tof_mra_vessel_gan": {"n_samples": 1},
}
EXPECTED = {
    "brain_ldm": {"sample_000000.nii.gz", "sample_000000.json", "sample_000000.png"},
    "brain_spade3d": {"sample_000000_T1w.nii.gz", "sample_000000_label.nii.gz", "sample_000000.json"},
    "tof_mra_vessel_gan": {"pair_000000_image.nii.gz", "pair_000000_label.nii.gz", "generation.json"},
}
#: Overlays that replace ``initialize``: their whole initialize step runs from another folder (no sampling).
INITIALIZE_ONLY = [
    ("brain_ldm", ["inference.json", "export.json"]),
    ("brain_spade3d", ["inference.json", "evaluate.json"]),
    ("tof_mra_vessel_gan", ["inference.json", "export.json"]),
]
INITIALIZE_SCRIPT = """
import sys
from monai.bundle import create_workflow
bundle, configs = sys.argv[1], sys.argv[2:]
create_workflow(config_file=[f"{bundle}/configs/{c}" for c in configs], meta_file=f"{bundle}/configs/metadata.json",
                logging_file=False, bundle_root=bundle, workflow_type=None)
print("scripts from", sys.modules["scripts"].__file__)
"""


def _name(path: Path) -> str:
    return f"{path.parent.parent.name}/{path.name}"


@pytest.mark.parametrize("config", CONFIGS, ids=_name)
def test_every_config_puts_its_bundle_on_the_path_before_initialize_uses_it(config: Path) -> None:
    data = json.loads(config.read_text())
    if "bundle_root" in data:  # a config that can run alone
        assert data.get("bundle_scripts") == CONFIG_ENTRY, "copy bundle_runtime.bundle_path.CONFIG_ENTRY"
    if "$import scripts" in data.get("imports", []):  # this list replaces the base's, so it needs both
        assert {"$import os", "$import runpy"} <= set(data["imports"])
    if "initialize" in data:  # an overlay's list replaces the base's too
        assert data["initialize"][:1] == ["$@bundle_scripts"]


def test_put_bundle_first_drops_another_scripts_package_and_the_resolved_imports(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "scripts").mkdir(parents=True)
    (bundle / "scripts" / "__init__.py").write_text("")
    foreign = types.ModuleType("scripts")
    foreign.__file__ = str(tmp_path / "other" / "scripts" / "__init__.py")
    saved_path, saved = list(sys.path), {n: m for n, m in sys.modules.items() if n.split(".")[0] == "scripts"}
    try:
        sys.modules.update({"scripts": foreign, "scripts.networks": types.ModuleType("scripts.networks")})
        resolved = {"imports::2": object(), "bundle_root": str(bundle)}
        assert put_bundle_first(str(bundle), resolved) == str(bundle.resolve())
        assert sys.path[0] == str(bundle.resolve()) and resolved == {}
        assert "scripts" not in sys.modules and "scripts.networks" not in sys.modules
        own = types.ModuleType("scripts")
        own.__file__ = str(bundle / "scripts" / "__init__.py")
        sys.modules["scripts"] = own
        put_bundle_first(str(bundle), {})
        assert sys.modules["scripts"] is own and sys.path.count(str(bundle.resolve())) == 1  # kept, not re-added
    finally:
        sys.path[:] = saved_path
        for name in [n for n in sys.modules if n.split(".")[0] == "scripts"]:
            del sys.modules[name]
        sys.modules.update(saved)


@pytest.mark.slow
def test_a_toy_bundle_reaches_its_scripts_in_initialize_from_another_folder(tmp_path: Path) -> None:
    """The mechanism alone: MONAI's import pass, repeated once the entry has put the bundle on the path."""
    bundle, elsewhere = tmp_path / "toy", tmp_path / "elsewhere"
    (bundle / "scripts" / "common").mkdir(parents=True)
    elsewhere.mkdir()
    (bundle / "scripts" / "__init__.py").write_text("ANSWER = 42\n")
    shutil.copy(bundle_path.__file__, bundle / "scripts" / "common" / "bundle_path.py")
    config = {
        "imports": ["$import os", "$import runpy", "$import scripts"],
        "bundle_root": ".",
        "bundle_scripts": CONFIG_ENTRY,
        "initialize": ["$@bundle_scripts", "$print('initialize sees', scripts.ANSWER)"],
        "run": ["$print('run sees', scripts.ANSWER)"],
    }
    (bundle / "config.json").write_text(json.dumps(config))
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "config.json")]
    env = bundle_env(bundle)
    run = subprocess.run(
        [*command, "--bundle_root", str(bundle)], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "initialize sees 42" in run.stdout and "run sees 42" in run.stdout
    # the default bundle_root '.' is the working folder here: refused, naming it and the option
    refused = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "initialize sees" not in refused.stdout
    assert f"bundle_root {str(elsewhere.resolve())!r} is not the bundle folder" in refused.stderr
    assert "pass --bundle_root /path/to/the/bundle" in refused.stderr


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES)
def test_inference_runs_from_another_folder(bundle: str, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    run_bundle(BUNDLES_DIR / bundle, "inference.json", {**TINY_RUNS[bundle], "output_dir": str(out)}, cwd=elsewhere)
    assert EXPECTED[bundle] <= {p.name for p in out.iterdir()}
    assert not any(elsewhere.iterdir())  # nothing was written relative to the working folder


@pytest.mark.slow
@pytest.mark.parametrize(("bundle", "configs"), INITIALIZE_ONLY, ids=["+".join(c) for _, c in INITIALIZE_ONLY])
def test_overlays_that_replace_initialize_initialize_from_another_folder(
    bundle: str, configs: list[str], tmp_path: Path
) -> None:
    bundle_dir = BUNDLES_DIR / bundle
    result = subprocess.run(
        [sys.executable, "-c", INITIALIZE_SCRIPT, str(bundle_dir), *configs],
        cwd=tmp_path,
        env=bundle_env(bundle_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"scripts from {bundle_dir / 'scripts' / '__init__.py'}" in result.stdout
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_inference_from_another_bundles_folder_runs_its_own_scripts(tmp_path: Path) -> None:
    """brain_spade3d has a ``scripts.networks`` too: the working folder's package must not stand in for tof's."""
    cwd = BUNDLES_DIR / "brain_spade3d"
    before = sorted(os.listdir(cwd))
    out = tmp_path / "out"
    run_bundle(BUNDLES_DIR / "tof_mra_vessel_gan", "inference.json", {"n_samples": 1, "output_dir": str(out)}, cwd=cwd)
    assert EXPECTED["tof_mra_vessel_gan"] <= {p.name for p in out.iterdir()}
    assert sorted(os.listdir(cwd)) == before


@pytest.mark.slow
def test_the_default_bundle_root_from_another_folder_is_refused_before_any_work(tmp_path: Path) -> None:
    bundle = BUNDLES_DIR / "tof_mra_vessel_gan"
    out = tmp_path / "out"
    command = bundle_command(bundle, "inference.json", {"n_samples": 1, "output_dir": str(out)}, elsewhere=True)
    at = command.index("--bundle_root")
    del command[at : at + 2]
    result = subprocess.run(command, cwd=tmp_path, env=bundle_env(bundle), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert f"bundle_root {str(tmp_path.resolve())!r} is not the bundle folder" in result.stderr, result.stderr[-3000:]
    assert "pass --bundle_root /path/to/the/bundle" in result.stderr
    assert not out.exists()
