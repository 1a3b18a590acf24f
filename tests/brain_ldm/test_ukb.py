"""The ``ukb`` profile: the published UK Biobank model, loaded from old-format (GenerativeModels) weights.

monai-generative 0.2.3 still builds the old networks, so it serves as the format oracle: random
old-format networks of the published structure (at a reduced width) are saved, loaded through the
bundle's own ``ukb.json`` loading step, and must compute the same outputs.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import nibabel as nib
import pytest
import torch
import yaml
from monai.bundle import ConfigParser

from tests.brain_ldm.ldm_helpers import BUNDLE, bundle_module, run_bundle

UKB_CONFIGS = ["inference.json", "ukb.json"]

# The published structure (4-level autoencoder, 3-level UNet with attention on levels 2-3, one head
# per level, resblock up/down, cross-attention, upcast attention) at a fraction of the width.
TINY_UKB = {
    "autoencoder_def#channels": [8, 16, 16, 16],
    "autoencoder_def#norm_num_groups": 8,
    "diffusion_def#channels": [16, 32, 48],
    "diffusion_def#num_head_channels": [0, 32, 48],
    "diffusion_def#norm_num_groups": 8,
}
# Old GenerativeModels constructor arguments that MONAI core renamed or added.
RENAMED = {"channels": "num_channels"}
NEW_ONLY = {"_target_", "use_flash_attention", "include_fc", "use_combined_linear", "use_checkpoint"}


def ukb_parser(overrides: dict | None = None) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / name) for name in UKB_CONFIGS])
    parser.read_meta(str(BUNDLE / "configs" / "metadata.json"))
    parser.update({"bundle_root": str(BUNDLE), "device": "$torch.device('cpu')", **(overrides or {})})
    return parser


def old_network_kwargs(parser: ConfigParser, config_id: str) -> dict:
    """The config's constructor arguments, spelled for the old GenerativeModels class."""
    resolved = parser.get_parsed_content(config_id, instantiate=False).resolve_args()
    return {RENAMED.get(key, key): value for key, value in resolved.items() if key not in NEW_ONLY}


def randomise(network: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Perturb every parameter, including the UNet's zero-initialised output convolution."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    assert all(float(p.detach().abs().max()) > 0 for p in network.parameters())
    return network.eval()


@pytest.fixture(scope="module")
def generative_nets():
    with warnings.catch_warnings():  # monai-generative 0.2.3 uses the deprecated torch.cuda.amp.autocast
        warnings.simplefilter("ignore", FutureWarning)
        nets = pytest.importorskip("generative.networks.nets")
    return nets


@pytest.fixture(scope="module")
def old_format_weights(generative_nets, tmp_path_factory) -> dict:
    """Random tiny old-format networks of the published structure, saved as the bundle expects them."""
    folder = tmp_path_factory.mktemp("ukb_old_format") / "models" / "ukb"
    folder.mkdir(parents=True)
    with bundle_module("ukb"):
        parser = ukb_parser(TINY_UKB)
        old_autoencoder = randomise(generative_nets.AutoencoderKL(**old_network_kwargs(parser, "autoencoder_def")), 0)
        old_diffusion = randomise(generative_nets.DiffusionModelUNet(**old_network_kwargs(parser, "diffusion_def")), 1)
    paths = {"load_autoencoder_path": folder / "autoencoder.pt", "load_diffusion_path": folder / "diffusion_model.pt"}
    torch.save(old_autoencoder.state_dict(), paths["load_autoencoder_path"])
    torch.save(old_diffusion.state_dict(), paths["load_diffusion_path"])
    return {"autoencoder": old_autoencoder, "diffusion": old_diffusion, "paths": {k: str(v) for k, v in paths.items()}}


def test_ukb_profile_is_the_published_model():
    with bundle_module("ukb"):
        parser = ukb_parser()
        assert parser.get_parsed_content("profile") == "ukb"
        assert parser.get_parsed_content("resolution_mm") == 1
        assert parser.get_parsed_content("spatial_shape") == [160, 224, 160]
        assert parser.get_parsed_content("latent_shape") == [3, 20, 28, 20]
        assert parser.get_parsed_content("scale_factor") == 1.0
        assert parser.get_parsed_content("num_inference_steps") == 50
        scheduler = parser.get_parsed_content("noise_scheduler")
        with torch.device("meta"):  # full size, without allocating 2.2 GB of weights
            autoencoder = parser.get_parsed_content("autoencoder_def")
            diffusion = parser.get_parsed_content("diffusion_def")
        paths = [parser.get_parsed_content(k) for k in ("load_autoencoder_path", "load_diffusion_path")]
        load_steps = parser.get("load_weights")
    assert type(scheduler).__name__ == "DDIMScheduler"
    assert (
        scheduler.num_train_timesteps == 1000 and scheduler.prediction_type == "epsilon" and not scheduler.clip_sample
    )
    assert float(scheduler.betas[0]) == pytest.approx(0.0015) and float(scheduler.betas[-1]) == pytest.approx(0.0205)
    # Pinaya et al. 2022 / model-zoo: 13.8 M autoencoder, 553.2 M UNet parameters.
    assert sum(p.numel() for p in autoencoder.parameters()) == 13_766_248
    assert sum(p.numel() for p in diffusion.parameters()) == 553_168_899
    assert all("load_old_format" in step for step in load_steps)
    large_files = yaml.safe_load((BUNDLE / "large_files.yml").read_text())["large_files"]
    listed = {entry["path"]: entry for entry in large_files}
    for path in paths:
        relative = Path(path).relative_to(BUNDLE).as_posix()
        assert relative in listed, f"{relative} is not in large_files.yml"
        assert listed[relative]["url"].startswith("https://")


def test_old_format_weights_give_the_same_outputs(old_format_weights):
    with bundle_module("ukb"):
        parser = ukb_parser({**TINY_UKB, **old_format_weights["paths"]})
        parser.get_parsed_content("load_weights")
        autoencoder = parser.get_parsed_content("autoencoder").eval()
        diffusion = parser.get_parsed_content("diffusion").eval()
    old_autoencoder, old_diffusion = old_format_weights["autoencoder"], old_format_weights["diffusion"]
    generator = torch.Generator().manual_seed(2)
    image = torch.rand(2, 1, 16, 24, 16, generator=generator)
    latent = torch.randn(2, 3, 2, 3, 2, generator=generator)
    noisy = torch.randn(2, 7, 4, 8, 4, generator=generator)
    timesteps = torch.tensor([3, 871])
    context = torch.rand(2, 1, 4, generator=generator)
    with torch.no_grad():
        pairs = {
            "encode mu": (old_autoencoder.encode(image)[0], autoencoder.encode(image)[0]),
            "encode sigma": (old_autoencoder.encode(image)[1], autoencoder.encode(image)[1]),
            "decode": (old_autoencoder.decode_stage_2_outputs(latent), autoencoder.decode_stage_2_outputs(latent)),
            "unet": (
                old_diffusion(noisy, timesteps=timesteps, context=context),
                diffusion(noisy, timesteps=timesteps, context=context),
            ),
        }
    for name, (expected, got) in pairs.items():
        assert expected.shape == got.shape, name
        assert float(expected.abs().max()) > 1e-3, f"{name}: degenerate output, the comparison would prove nothing"
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_weights_already_in_monai_core_layout_load_as_is(old_format_weights, tmp_path):
    with bundle_module("ukb"):
        parser = ukb_parser({**TINY_UKB, **old_format_weights["paths"]})
        parser.get_parsed_content("load_weights")
        converted = parser.get_parsed_content("diffusion").state_dict()
        torch.save(converted, tmp_path / "diffusion_model.pt")
        again = ukb_parser(
            {**TINY_UKB, **old_format_weights["paths"], "load_diffusion_path": str(tmp_path / "diffusion_model.pt")}
        )
        again.get_parsed_content("load_weights")
        reloaded = again.get_parsed_content("diffusion").state_dict()
    assert reloaded.keys() == converted.keys()
    assert all(torch.equal(reloaded[key], converted[key]) for key in converted)


def test_old_format_mismatch_names_the_file(old_format_weights, tmp_path):
    paths = old_format_weights["paths"]
    wider = {
        **TINY_UKB,
        **paths,
        "diffusion_def#channels": [16, 32, 64],
        "diffusion_def#num_head_channels": [0, 32, 64],
    }
    with bundle_module("ukb"), pytest.raises(RuntimeError) as error:
        ukb_parser(wider).get_parsed_content("load_weights")
    assert "load_diffusion_path" in str(error.value.__cause__) and "does not match" in str(error.value.__cause__)

    old_state = torch.load(paths["load_diffusion_path"], weights_only=True)
    extra = {**old_state, "extra_block.weight": torch.zeros(3)}
    missing = {key: value for key, value in old_state.items() if key != "down_blocks.0.resnets.0.conv1.conv.weight"}
    truncated = Path(paths["load_diffusion_path"]).read_bytes()[:1000]
    for case, expected in [(extra, "does not use"), (missing, "provides"), (truncated, "truncated")]:
        path = tmp_path / "diffusion_model.pt"
        path.write_bytes(case) if isinstance(case, bytes) else torch.save(case, path)
        with bundle_module("ukb"), pytest.raises(RuntimeError) as error:
            ukb_parser({**TINY_UKB, **paths, "load_diffusion_path": str(path)}).get_parsed_content("load_weights")
        message = str(error.value.__cause__)
        assert "load_diffusion_path" in message and str(path) in message and expected in message, message


@pytest.mark.slow
@pytest.mark.parametrize("solver", ["ddim", "dpmpp_2m"])
def test_ukb_sampling_matches_the_old_networks(old_format_weights, tmp_path, solver):
    """Sampling with the ukb overlay, as a user runs it, equals sampling with the old-format oracle.

    The ukb profile decodes in slabs (``decode_mode`` "split") while the oracle decodes whole, so this
    also shows that old-format weights decode identically through the split decoder.
    """
    output_dir = tmp_path / "samples"
    spatial_shape = [32, 64, 32]  # latent 4x8x4: divisible by the UNet's two downsamplings
    condition = [1.0, 0.3, 0.7, 0.4]
    run_bundle(
        BUNDLE,
        UKB_CONFIGS,
        {
            **TINY_UKB,
            **old_format_weights["paths"],
            "spatial_shape": spatial_shape,
            "num_inference_steps": 3,
            "solver": solver,
            "decode_splits": 3,
            "condition": condition,
            "seed": 7,
            "output_dir": str(output_dir),
            "progress": False,
        },
    )
    sidecar = json.loads((output_dir / "sample_000000.json").read_text())
    assert sidecar["profile"] == "ukb" and sidecar["scale_factor"] == 1.0 and sidecar["seed"] == 7
    assert sidecar["decode_mode"] == "split"
    generated = torch.from_numpy(nib.load(output_dir / "sample_000000.nii.gz").get_fdata(dtype="float32"))

    from bundle_runtime.latent_diffusion import ConditionalLatentSampler
    from bundle_runtime.solvers import select_solver

    with bundle_module("ukb"):
        parser = ukb_parser({**TINY_UKB, "spatial_shape": spatial_shape})
        scheduler = select_solver(solver, parser.get_parsed_content("noise_scheduler"))
        latent_shape = parser.get_parsed_content("latent_shape")
    sampler = ConditionalLatentSampler(scheduler, 3, latent_shape, scale_factor=1.0, progress=False)
    noise = sampler.initial_noise(1, torch.Generator().manual_seed(7), "cpu")
    old_autoencoder, old_diffusion = old_format_weights["autoencoder"], old_format_weights["diffusion"]
    expected = sampler(old_diffusion, old_autoencoder.decode_stage_2_outputs, torch.tensor([condition]), noise)
    expected = expected[0, 0].clamp(0, 1)
    assert generated.shape == expected.shape
    assert 0.01 < float(((expected > 0) & (expected < 1)).float().mean()), "oracle output is all clipped"
    torch.testing.assert_close(generated, expected, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_ukb_profile_exports_with_parity(old_format_weights, tmp_path):
    """The published structure (attention on two levels, upcast attention) traces and exports faithfully."""
    overrides = {
        **TINY_UKB,
        **old_format_weights["paths"],
        "spatial_shape": [32, 64, 32],  # latent 4x8x4
        "export_check_latent_shape": [3, 8, 4, 12],  # every axis differs from the traced one
        "export_dir": str(tmp_path),
    }
    run_bundle(BUNDLE, [*UKB_CONFIGS, "export.json"], overrides)
    report = json.loads((tmp_path / "export_report.json").read_text())
    assert report["profile"] == "ukb"
    for network in report["networks"].values():
        assert len(network["checks"]) == 2
        for check in network["checks"]:
            allowed = 1e-4 * max(1.0, check["output_max_abs"])  # random weights give outputs far above 1
            assert check["onnxruntime_max_abs_error"] < allowed and check["torchscript_max_abs_error"] < allowed
