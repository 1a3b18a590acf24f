"""Fixtures for the tof_mra_vessel_gan bundle: tiny phantoms, a trained tiny GAN, a generator with visible output."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import bundle_scripts_modules
from tests.tof_mra_vessel_gan.tof_helpers import (
    BUNDLE,
    PATCHES_PER_PATIENT,
    TINY,
    TINY_PHANTOMS,
    run_tiny,
    workspace_overrides,
)


@pytest.fixture(scope="session")
def tof_datalist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo TOF-MRA phantoms at test size; returns their datalist.json."""
    from tools.demo_data.tof import make_tof_dataset

    return make_tof_dataset(
        tmp_path_factory.mktemp("tof"), seed=0, n_patients=5, patches_per_patient=PATCHES_PER_PATIENT, **TINY_PHANTOMS
    )


@pytest.fixture
def copied_datalist(tof_datalist: Path, tmp_path: Path) -> Path:
    """A private copy of the phantoms that a test may damage."""
    target = tmp_path / "tof_mra"
    shutil.copytree(tof_datalist.parent, target)
    return target / "datalist.json"


@pytest.fixture(scope="session")
def trained_gan(tof_datalist: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The shipped variant (wgan_gp_sn) trained for two tiny epochs by train.json, as a user would."""
    root = tmp_path_factory.mktemp("trained_gan")
    result = run_tiny(
        ["train.json", "wgan_gp_sn.json"], {"dataset_dir": str(tof_datalist.parent), **workspace_overrides(root)}
    )
    return SimpleNamespace(
        root=root, log=result.stdout + result.stderr, **{k: Path(v) for k, v in workspace_overrides(root).items()}
    )


@pytest.fixture(scope="module")
def bundle_scripts() -> Iterator[SimpleNamespace]:
    """The bundle's ``scripts`` package imported in-process, without clashing with another bundle's ``scripts``."""
    names = ("networks", "gan_training", "generation", "data", "segmentation")
    with bundle_scripts_modules(BUNDLE, *names) as modules:
        yield SimpleNamespace(**dict(zip(names, modules)))


@pytest.fixture(scope="module")
def vivid_generator(bundle_scripts: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny generator weights with a wide initialisation, so images span [-1, 1] and labels are not empty.

    Two tiny training epochs barely move a GAN from its near-zero start; tests of inference, export
    and synthetic-data training need outputs with contrast, which this file gives.
    """
    import torch

    torch.manual_seed(0)
    generator = bundle_scripts.networks.PairGenerator(ngf=TINY["ngf"], init_std=0.2)
    with torch.no_grad():
        generator(torch.randn(16, 128))  # batch-norm running statistics
    path = tmp_path_factory.mktemp("vivid") / "generator.pt"
    torch.save(generator.state_dict(), path)
    return path
