"""``tools verify``: a valid bundle passes, and each broken variant fails with a message naming bundle and file."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tools import BUNDLES_DIR, REPO_ROOT
from tools.packaging import available_bundles
from tools.verify import (
    SchemaNotFoundError,
    check_model_zoo_names,
    check_networks,
    find_schema,
    verify_bundle,
    verify_cli,
)

SCHEMA_URL_BASENAME = "meta_schema_20240725.json"


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=4))


def _metadata(bundle: Path) -> Path:
    return bundle / "configs" / "metadata.json"


def _inference(bundle: Path) -> Path:
    return bundle / "configs" / "inference.json"


def test_valid_bundle_passes(tiny_bundle, schema_path):
    assert verify_bundle(tiny_bundle, schema=schema_path) == []


def test_multi_input_network_runs_with_keyword_inputs(make_bundle, schema_path):
    bundle = make_bundle(with_diffusion=True)
    assert verify_bundle(bundle, schema=schema_path) == []

    # The check really feeds x / timesteps / context: a context of the wrong width must break it.
    _edit_json(_metadata(bundle), lambda m: m["diffusion_data_format"]["inputs"]["context"].update(spatial_shape=[5]))
    problems = check_networks(bundle)
    assert len(problems) == 1
    assert "tiny_bundle: configs/inference.json: diffusion_def (diffusion_data_format)" in problems[0]
    assert "'context': [1, 1, 5]" in problems[0]

    def rename_x(metadata: dict) -> None:
        inputs = metadata["diffusion_data_format"]["inputs"]
        inputs["context"]["spatial_shape"] = [4]
        inputs["latent"] = inputs.pop("x")

    _edit_json(_metadata(bundle), rename_x)
    problems = check_networks(bundle)
    assert len(problems) == 1 and "name them after the parameters of forward()" in problems[0]


def _remove_data_license(bundle: Path) -> None:
    (bundle / "docs" / "data_license.txt").unlink()


def _drop_required_metadata(bundle: Path) -> None:
    _edit_json(_metadata(bundle), lambda m: m.pop("authors"))


def _wrong_metadata_type(bundle: Path) -> None:
    _edit_json(_metadata(bundle), lambda m: m["network_data_format"]["inputs"]["image"].update(num_channels="one"))


def _version_not_in_changelog(bundle: Path) -> None:
    _edit_json(_metadata(bundle), lambda m: m.update(version="0.2.0"))


def _unparsable_config(bundle: Path) -> None:
    (bundle / "configs" / "train.json").write_text('{"network_def": {"_target_": "UNet",')


def _unresolvable_target(bundle: Path) -> None:
    _edit_json(_inference(bundle), lambda c: c.update(loss={"_target_": "monai.losses.NoSuchLoss"}))


def _missing_scripts_target(bundle: Path) -> None:
    _edit_json(_inference(bundle), lambda c: c.update(sampler={"_target_": "scripts.sampling.Sampler"}))


def _missing_scripts_expression(bundle: Path) -> None:
    _edit_json(_inference(bundle), lambda c: c["run"].append("$scripts.export.save(@network)"))


def _file_over_limit(bundle: Path) -> None:
    with open(bundle / "models" / "model.pt", "wb") as sparse:
        sparse.truncate(26 * 1024 * 1024)


def _large_file_without_sha256(bundle: Path) -> None:
    (bundle / "large_files.yml").write_text(
        "large_files:\n  - path: models/model.pt\n    url: https://example.org/model.pt\n    hash_type: sha256\n"
    )


def _large_file_without_url(bundle: Path) -> None:
    (bundle / "large_files.yml").write_text(
        f"large_files:\n  - path: models/model.pt\n    hash_val: {'a' * 64}\n    hash_type: sha256\n"
    )


def _large_file_entry(bundle: Path, hash_type: str, hash_val: str) -> None:
    (bundle / "large_files.yml").write_text(
        f"large_files:\n  - path: models/model.pt\n    url: https://example.org/m.pt\n    hash_val: {hash_val}\n"
        f"    hash_type: {hash_type}\n"
    )


def _wrong_input_channels(bundle: Path) -> None:
    _edit_json(_metadata(bundle), lambda m: m["network_data_format"]["inputs"]["image"].update(num_channels=3))


def _wrong_output_channels(bundle: Path) -> None:
    _edit_json(_metadata(bundle), lambda m: m["network_data_format"]["outputs"]["pred"].update(num_channels=3))


def _wrong_output_size(bundle: Path) -> None:
    _edit_json(_metadata(bundle), lambda m: m["network_data_format"]["outputs"]["pred"].update(spatial_shape=[8, 8, 8]))


def _network_not_in_configs(bundle: Path) -> None:
    _edit_json(_metadata(bundle), lambda m: m.update(critic_data_format=m["network_data_format"]))


BROKEN = {
    "missing mandatory file": (_remove_data_license, "tiny_bundle: docs/data_license.txt: mandatory file is missing"),
    "schema: required key": (
        _drop_required_metadata,
        "tiny_bundle: configs/metadata.json: schema violation at (top level): 'authors' is a required property",
    ),
    "schema: wrong type": (
        _wrong_metadata_type,
        "configs/metadata.json: schema violation at network_data_format/inputs/image/num_channels",
    ),
    "version not in changelog": (
        _version_not_in_changelog,
        "tiny_bundle: configs/metadata.json: version '0.2.0' is not a key of 'changelog'",
    ),
    "unparsable config": (_unparsable_config, "tiny_bundle: configs/train.json: does not parse"),
    "unresolvable _target_": (
        _unresolvable_target,
        "tiny_bundle: configs/inference.json: _target_ 'monai.losses.NoSuchLoss' at 'loss' cannot be resolved",
    ),
    "missing scripts module as _target_": (
        _missing_scripts_target,
        "tiny_bundle: configs/inference.json: _target_ 'scripts.sampling.Sampler' at 'sampler' cannot be resolved",
    ),
    "missing scripts module in expression": (
        _missing_scripts_expression,
        "configs/inference.json: 'run#3' references 'scripts.export.save' but scripts.export does not exist",
    ),
    "file over 25 MB": (_file_over_limit, "tiny_bundle: models/model.pt: 26.0 MiB is over the 25 MiB limit"),
    "large file without sha256": (
        _large_file_without_sha256,
        "tiny_bundle: large_files.yml: models/model.pt: hash_val is not a 64-hex sha256",
    ),
    "large file without url": (_large_file_without_url, "tiny_bundle: large_files.yml: models/model.pt: has no url"),
    "large files without a list": (
        lambda bundle: (bundle / "large_files.yml").write_text("files: []\n"),
        "tiny_bundle: large_files.yml: needs a 'large_files:' list",
    ),
    "large file with sha1": (
        functools.partial(_large_file_entry, hash_type="sha1", hash_val="a" * 40),
        "large_files.yml: models/model.pt: hash_type is 'sha1', not one of ['md5', 'sha256']",
    ),
    "large file md5 of sha256 length": (
        functools.partial(_large_file_entry, hash_type="md5", hash_val="a" * 64),
        "large_files.yml: models/model.pt: hash_val is not a 32-hex md5",
    ),
    "network input channels": (
        _wrong_input_channels,
        "tiny_bundle: configs/inference.json: network_def (network_data_format): does not run on its declared "
        "inputs {'image': [1, 3, 16, 16, 16]}",
    ),
    "network output channels": (
        _wrong_output_channels,
        "network_def (network_data_format): output 'pred' has shape [1, 2, 16, 16, 16], expected 3 channels",
    ),
    "network output size": (
        _wrong_output_size,
        "output 'pred' has spatial shape [16, 16, 16], expected [8, 8, 8]",
    ),
    "network without config": (_network_not_in_configs, "critic_data_format is declared but no config defines"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_bundle_fails_with_clear_message(case, tiny_bundle, schema_path):
    break_bundle, expected = BROKEN[case]
    break_bundle(tiny_bundle)
    problems = verify_bundle(tiny_bundle, schema=schema_path)
    assert any(expected in problem for problem in problems), problems


def test_good_large_files_entry_passes(tiny_bundle, schema_path):
    (tiny_bundle / "large_files.yml").write_text(
        f"large_files:\n  - path: models/model.pt\n    url: https://example.org/model.pt\n    hash_val: {'0f' * 32}\n"
        "    hash_type: sha256\n"
    )
    assert verify_bundle(tiny_bundle, schema=schema_path) == []


def test_md5_large_file_passes_with_a_warning(tiny_bundle, schema_path, capsys):
    _large_file_entry(tiny_bundle, "md5", "a" * 32)
    verify_cli(str(tiny_bundle), schema=str(schema_path), networks=False)
    out = capsys.readouterr().out
    assert f"PASS  {tiny_bundle}" in out
    assert "  warning: tiny_bundle: large_files.yml: models/model.pt: checked by md5 only, a weaker hash" in out


def test_unknown_bundle_name():
    problems = verify_bundle("no_such_bundle_anywhere")
    assert len(problems) == 1
    assert "unknown bundle 'no_such_bundle_anywhere'" in problems[0]


def test_override_fixes_a_network_for_the_check(tiny_bundle):
    _edit_json(_inference(tiny_bundle), lambda c: c["network_def"].update(in_channels=3))
    assert any("does not run on its declared inputs" in p for p in check_networks(tiny_bundle))
    assert check_networks(tiny_bundle, override={"network_def#in_channels": 1}) == []


def test_override_matching_no_config_is_reported(tiny_bundle):
    problems = check_networks(tiny_bundle, override={"autoencoder_def#channels": [4]})
    assert problems == ["tiny_bundle: --override: keys match no network config: ['autoencoder_def#channels']"]


def test_symbolic_shapes_and_shape_overrides(tiny_bundle):
    def symbolic(metadata: dict) -> None:
        metadata["network_data_format"]["inputs"]["image"]["spatial_shape"] = ["16*n", "16*n", "16*n"]
        metadata["network_data_format"]["outputs"]["pred"]["spatial_shape"] = ["16*n", "16*n", "16*n"]

    _edit_json(_metadata(tiny_bundle), symbolic)
    assert check_networks(tiny_bundle) == []

    _edit_json(
        _metadata(tiny_bundle), lambda m: m["network_data_format"]["inputs"]["image"].update(spatial_shape=["*"] * 3)
    )
    problems = check_networks(tiny_bundle)
    assert len(problems) == 1 and "spatial dimension '*' is not a number; give one with --shapes" in problems[0]
    assert check_networks(tiny_bundle, shapes={"network": {"image": [8, 8, 8]}}) == []
    # naming the output checks its size too
    assert check_networks(tiny_bundle, shapes={"network": {"image": [8, 8, 8], "pred": [8, 8, 8]}}) == []
    problems = check_networks(tiny_bundle, shapes={"network": {"image": [8, 8, 8], "pred": [4, 4, 4]}})
    assert len(problems) == 1 and "expected [4, 4, 4]" in problems[0]
    problems = check_networks(tiny_bundle, shapes={"generator": {"z": [4]}, "network": {"image": [8, 8, 8]}})
    assert problems == ["tiny_bundle: --shapes: names no declared network: ['generator']"]


def test_each_bundle_imports_its_own_scripts(make_bundle, schema_path):
    first = make_bundle("first_bundle")
    second = make_bundle("second_bundle")
    (second / "scripts" / "writer.py").write_text('"""A writer module without ShapeWriter."""\n')
    cwd, path = os.getcwd(), list(sys.path)

    assert verify_bundle(first, schema=schema_path) == []
    problems = verify_bundle(second, schema=schema_path)
    assert any("second_bundle: configs/inference.json: _target_ 'scripts.writer.ShapeWriter'" in p for p in problems)
    assert verify_bundle(first, schema=schema_path) == []

    assert os.getcwd() == cwd and sys.path == path
    assert not any(name == "scripts" or name.startswith("scripts.") for name in sys.modules)


def test_schema_lookup_order(tmp_path, monkeypatch, schema_path, serve_directory, closed_port):
    url = f"https://example.invalid/releases/{SCHEMA_URL_BASENAME}"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SYNTHBRAIN_SCHEMA_DIR", raising=False)

    with pytest.raises(SchemaNotFoundError, match="--schema /nowhere/schema.json: no such file"):
        find_schema(url, "/nowhere/schema.json")
    assert find_schema(url, schema_path) == schema_path

    schema_dir = tmp_path / "schemas"
    schema_dir.mkdir()
    shutil.copy(schema_path, schema_dir / SCHEMA_URL_BASENAME)
    monkeypatch.setenv("SYNTHBRAIN_SCHEMA_DIR", str(schema_dir))
    assert find_schema(url) == schema_dir / SCHEMA_URL_BASENAME
    monkeypatch.delenv("SYNTHBRAIN_SCHEMA_DIR")

    # Nothing local: the error says where to put the file.
    unreachable = f"http://127.0.0.1:{closed_port}/{SCHEMA_URL_BASENAME}"
    with pytest.raises(SchemaNotFoundError, match="could not be downloaded") as error:
        find_schema(unreachable, timeout=5)
    assert ".cache/synthbrain-zoo/schemas" in str(error.value) and "SYNTHBRAIN_SCHEMA_DIR" in str(error.value)

    # Downloaded once into the cache, then found there without the network.
    served = serve_directory(schema_dir)
    cached = find_schema(f"{served}/{SCHEMA_URL_BASENAME}", timeout=5)
    assert cached == tmp_path / "home" / ".cache" / "synthbrain-zoo" / "schemas" / SCHEMA_URL_BASENAME
    assert cached.read_bytes() == schema_path.read_bytes()
    assert find_schema(unreachable) == cached


def test_missing_schema_is_reported_for_the_bundle(tiny_bundle):
    problems = verify_bundle(tiny_bundle, schema="/nowhere/schema.json", networks=False)
    assert problems == [
        "tiny_bundle: configs/metadata.json: cannot validate: --schema /nowhere/schema.json: no such file"
    ]


def test_cli_reports_each_bundle_and_exits_non_zero(make_bundle, schema_path):
    good = make_bundle("good_bundle")
    bad = make_bundle("bad_bundle")
    _version_not_in_changelog(bad)
    env = dict(os.environ, SYNTHBRAIN_SCHEMA_DIR=str(schema_path.parent), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "tools", "verify", str(good), str(bad)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert f"PASS  {good}" in result.stdout
    assert f"FAIL  {bad}" in result.stdout
    assert "bad_bundle: configs/metadata.json: version '0.2.0' is not a key of 'changelog'" in result.stdout
    assert "1 of 2 bundle(s) failed" in result.stderr


def test_cli_function_passes_and_parses_json_options(tiny_bundle, schema_path, capsys):
    _edit_json(_inference(tiny_bundle), lambda c: c["network_def"].update(in_channels=3))
    with pytest.raises(SystemExit) as exit_info:
        verify_cli(str(tiny_bundle), schema=str(schema_path))
    assert exit_info.value.code == 1
    verify_cli(str(tiny_bundle), schema=str(schema_path), override='{"network_def#in_channels": 1}')
    assert f"PASS  {tiny_bundle}" in capsys.readouterr().out


@pytest.mark.parametrize("bundle", available_bundles(BUNDLES_DIR))
def test_real_bundle_meets_model_zoo_rules(bundle, schema_path):
    """Network runs are left to each bundle's own tests, which know the tiny override their networks need."""
    assert verify_bundle(bundle, schema=schema_path, networks=False) == []


def test_shipped_weights_need_a_matching_sha256(tiny_bundle):
    from tools.packaging import sha256_file
    from tools.verify import check_shipped_weights

    models = tiny_bundle / "models"
    models.mkdir(exist_ok=True)
    weights = models / "model.pt"
    weights.write_bytes(b"weights")
    (models / "SHA256SUMS").unlink()
    assert any("missing" in p and "model.pt" in p for p in check_shipped_weights(tiny_bundle))

    (models / "SHA256SUMS").write_text(f"{sha256_file(weights)}  model.pt\n")
    assert check_shipped_weights(tiny_bundle) == []

    weights.write_bytes(b"tampered")
    assert any("models/model.pt: sha256 differs" in p for p in check_shipped_weights(tiny_bundle))

    (models / "SHA256SUMS").write_text(f"{sha256_file(weights)}  model.pt\n{'0' * 64}  gone.pt\n")
    assert any("lists gone.pt" in p for p in check_shipped_weights(tiny_bundle))

    (models / "SHA256SUMS").write_text("not a checksum line\n")
    assert any("line 1" in p for p in check_shipped_weights(tiny_bundle))


def _drop_model_pt(bundle: Path) -> None:
    (bundle / "models" / "model.pt").unlink()
    (bundle / "models" / "SHA256SUMS").unlink()


def test_model_zoo_names_want_model_pt_shipped_or_listed_to_fetch(tiny_bundle, schema_path):
    assert check_model_zoo_names(tiny_bundle) == []
    _drop_model_pt(tiny_bundle)
    missing = "tiny_bundle: models/model.pt: missing; model-zoo's CI expects the main network's weights there"
    assert check_model_zoo_names(tiny_bundle) == [missing]
    assert missing in verify_bundle(tiny_bundle, schema=schema_path, networks=False)
    (tiny_bundle / "large_files.yml").write_text(
        f"large_files:\n  - path: models/model.pt\n    url: https://example.org/model.pt\n    hash_val: {'0f' * 32}\n"
        "    hash_type: sha256\n"
    )
    assert check_model_zoo_names(tiny_bundle) == []


def test_model_zoo_names_want_input_image_and_output_pred(tiny_bundle, schema_path):
    def rename_io(metadata: dict) -> None:
        fmt = metadata["network_data_format"]
        fmt["inputs"] = {"z": fmt["inputs"].pop("image")}
        fmt["outputs"] = {"pair": fmt["outputs"].pop("pred")}

    _edit_json(_metadata(tiny_bundle), rename_io)
    problems = check_model_zoo_names(tiny_bundle)
    assert len(problems) == 2
    assert "its one input is named 'z'" in problems[0] and "reads 'image'" in problems[0]
    assert "no output 'pred'" in problems[1]
    assert set(problems) <= set(verify_bundle(tiny_bundle, schema=schema_path, networks=False))


def test_shipped_bundles_follow_model_zoo_names():
    found = {name: check_model_zoo_names(BUNDLES_DIR / name) for name in available_bundles(BUNDLES_DIR)}
    assert found == {name: [] for name in available_bundles(BUNDLES_DIR)}
    assert sorted(found) == ["brain_ldm", "brain_spade3d", "tof_mra_vessel_gan"]
