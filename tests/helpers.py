"""Paths and the runner that drives bundles through ``python -m monai.bundle`` the way users do."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLES_DIR = REPO_ROOT / "bundles"
SHARED_REFERENCE = REPO_ROOT.parent / "shared" / "reference"
#: What a gloo worker prints when it aborts while its process group is torn down, after the work is done.
GLOO_TEARDOWN_ABORT = "terminate called without an active exception"


def bundle_version(bundle_dir: Path) -> str:
    """The version in the bundle's metadata, which every sidecar and manifest row must carry."""
    return json.loads((bundle_dir / "configs" / "metadata.json").read_text())["version"]


def _cli_value(value: object) -> str:
    """Python-literal text, which fire parses back (JSON's true/false/null would stay strings)."""
    return value if isinstance(value, str) else repr(value)


def bundle_command(
    bundle_dir: Path,
    config: str | list[str],
    overrides: dict | None = None,
    runner: list[str] | None = None,
    elsewhere: bool = False,
) -> list[str]:
    """The ``python -m monai.bundle run`` command line for ``config`` (one file or a merged list) and overrides.

    Config paths are relative to the bundle folder, or absolute with ``elsewhere`` (a run from another folder).
    """
    configs = [config] if isinstance(config, str) else list(config)
    config_dir = Path(bundle_dir) / "configs" if elsewhere else Path("configs")
    config_arg = [str(config_dir / c) for c in configs]
    command = (runner or [sys.executable, "-m"]) + [
        "monai.bundle",
        "run",
        "--config_file",
        config_arg[0] if len(config_arg) == 1 else json.dumps(config_arg),
        "--meta_file",
        str(config_dir / "metadata.json"),
        "--logging_file",
        str(config_dir / "logging.conf"),
        "--bundle_root",
        str(bundle_dir),
    ]
    for key, value in (overrides or {}).items():
        command += [f"--{key}", _cli_value(value)]
    return command


def bundle_env(elsewhere_bundle: Path | None = None) -> dict[str, str]:
    """The environment of a bundle subprocess: fixed hash seed, few threads. For a run from another folder,
    ``PYTHONPATH`` keeps no entry that is the bundle: the configs must find ``scripts`` through ``--bundle_root``."""
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    if elsewhere_bundle is not None and env.get("PYTHONPATH"):
        bundle = Path(elsewhere_bundle).resolve()
        kept = [p for p in env["PYTHONPATH"].split(os.pathsep) if p and Path(p).resolve() != bundle]
        env["PYTHONPATH"] = os.pathsep.join(kept)
    return env


#: Variables read when torch and MONAI are imported: a run whose values differ from the fork server's cannot be forked.
_IMPORT_TIME_ENV = ("PYTHONHASHSEED", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
_IMPORT_TIME_PREFIXES = ("MONAI_", "TORCH_", "PYTORCH_")


def _import_time_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k in _IMPORT_TIME_ENV or k.startswith(_IMPORT_TIME_PREFIXES)}


class BundleServer:
    """Client of ``tests/bundle_server.py``: one pre-imported interpreter per test session, a fork per bundle run.

    ``SYNTHBRAIN_TESTS_FORK=0`` turns it off (every run a fresh ``python -m monai.bundle``), as does a server
    that fails to start. Only plain runs are forked; ``run_bundle`` keeps torchrun launches as subprocesses.
    """

    _lock = threading.Lock()
    _instance: BundleServer | None = None
    _failed = False

    def __init__(self) -> None:
        self.env = bundle_env()
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("bundle_server.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=REPO_ROOT,
            env=self.env,
            text=True,
        )
        ready = self._reply(timeout=300)
        if not ready.get("ready"):
            raise RuntimeError(f"bundle server did not start: {ready}")
        atexit.register(self.close)

    @classmethod
    def shared(cls) -> BundleServer | None:
        """The session's server, started on first use; None where forking is off or the server cannot start."""
        if os.environ.get("SYNTHBRAIN_TESTS_FORK", "1") == "0" or cls._failed or not hasattr(os, "fork"):
            return None
        if cls._instance is None:
            try:
                cls._instance = cls()
            except (OSError, RuntimeError, ValueError) as error:
                print(f"bundle server unavailable, running subprocesses: {error}", file=sys.stderr)
                cls._failed = True
        return cls._instance

    def accepts(self, env: dict[str, str]) -> bool:
        """Whether a run with ``env`` imports what the server imported, the same way."""
        return self.process.poll() is None and _import_time_env(env) == _import_time_env(self.env)

    def _reply(self, timeout: float | None) -> dict:
        readable, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not readable:
            raise subprocess.TimeoutExpired(self.process.args, timeout)
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("bundle server exited")
        return json.loads(line)

    def run(
        self, module: str, args: list[str], cwd: Path, env: dict[str, str], timeout: float
    ) -> subprocess.CompletedProcess:
        """``python -m <module> <args>`` as a forked child, returning what ``subprocess.run`` would."""
        with self._lock, tempfile.TemporaryDirectory(prefix="bundle-run-") as folder:
            out, err = Path(folder) / "stdout", Path(folder) / "stderr"
            request = {
                "module": module,
                "args": args,
                "cwd": str(cwd),
                "env": env,
                "stdout": str(out),
                "stderr": str(err),
            }
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            pid = self._reply(timeout=60)["pid"]
            try:
                returncode = self._reply(timeout=timeout)["returncode"]
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self._reply(timeout=60)
                raise subprocess.TimeoutExpired(args, timeout, out.read_text(), err.read_text()) from None
            return subprocess.CompletedProcess(
                [sys.executable, "-m", *args],
                returncode,
                out.read_text(errors="replace"),
                err.read_text(errors="replace"),
            )

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _run(
    command: list[str], cwd: Path, env: dict[str, str], timeout: float, runner: list[str] | None
) -> subprocess.CompletedProcess:
    server = None if runner else BundleServer.shared()
    if server is not None and server.accepts(env):
        return server.run(command[2], command[3:], cwd, env, timeout)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run_bundle(
    bundle_dir: Path,
    config: str | list[str],
    overrides: dict | None = None,
    runner: list[str] | None = None,
    check: bool = True,
    timeout: float = 900,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python -m monai.bundle run`` in ``bundle_dir`` with ``--key value`` overrides.

    ``config`` is one config file name under ``configs/`` or a list merged in order, like a user's
    ``--config_file "['configs/train.json','configs/multi_gpu_train.json']"``. ``runner`` replaces
    ``python -m`` (e.g. with torchrun). The process runs in the bundle folder; with ``cwd`` it runs there
    instead, as the bundles' READMEs document for another folder: absolute config paths and ``--bundle_root``,
    and no ``PYTHONPATH`` entry for the bundle. Plain runs are forked from a pre-imported interpreter
    (``BundleServer``), which behaves as a fresh ``python -m monai.bundle`` but starts in a fraction of the time.
    """
    command = bundle_command(bundle_dir, config, overrides, runner, elsewhere=cwd is not None)
    env = bundle_env(bundle_dir if cwd is not None else None)
    cwd = bundle_dir if cwd is None else cwd
    result = _run(command, cwd, env, timeout, runner)
    if runner and result.returncode != 0 and GLOO_TEARDOWN_ABORT in result.stdout + result.stderr:
        # A rare torch/gloo teardown race on CPU (seen about once in ten 2-process runs despite the barrier in
        # the overlays' finalize): retry once; any other failure, or a second abort, still fails the test.
        print(f"retrying after a gloo teardown abort: {' '.join(command)}", file=sys.stderr)
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"bundle run failed ({result.returncode}): {' '.join(command)}\n"
            f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
        )
    return result


def unresolved_references(config_files: list[Path], meta_file: Path | None = None) -> list[str]:
    """``@id`` references of the merged configs that name no id, as ``"<referring id> -> @<missing id>"``.

    This is what an overlay can break without MONAI noticing until the run reaches the reference:
    merging succeeds, and a renamed or dropped base key fails only mid-run.
    """
    from monai.bundle import ConfigParser
    from monai.bundle.reference_resolver import ReferenceResolver

    parser = ConfigParser()
    parser.read_config([str(f) for f in config_files])
    if meta_file is not None:
        parser.read_meta(str(meta_file))
    parser.parse(reset=True)  # expands %macros and normalises ids, as a run does
    missing = []
    for item_id, item in parser.ref_resolver.items.items():
        text = item.get_config()
        if not isinstance(text, str):
            continue
        for reference in ReferenceResolver.match_refs_pattern(text):
            if reference.split(parser.ref_resolver.sep)[0] == "_meta_" and meta_file is None:
                continue
            if reference not in parser.ref_resolver.items:
                missing.append(f"{item_id} -> @{reference}")
    return missing


def _is_scripts_module(name: str) -> bool:
    return name == "scripts" or name.startswith("scripts.")


@contextlib.contextmanager
def bundle_scripts_modules(bundle_dir: Path, *names: str) -> Iterator[list[ModuleType]]:
    """Import ``scripts.<name>`` of one bundle in-process, leaving ``sys.modules`` as it was afterwards.

    Every bundle has its own ``scripts`` package, so another bundle's cached modules are set aside first.
    """
    owned = {name: sys.modules.pop(name) for name in list(sys.modules) if _is_scripts_module(name)}
    sys.path.insert(0, str(bundle_dir))
    try:
        yield [importlib.import_module(f"scripts.{name}") for name in names]
    finally:
        sys.path.remove(str(bundle_dir))
        for name in [name for name in sys.modules if _is_scripts_module(name)]:
            del sys.modules[name]
        sys.modules.update(owned)


def written_samples(bundle_dir: Path, overrides: dict, folder: Path, n_samples: int) -> Path:
    """``folder`` filled by the bundle's inference.json with ``n_samples`` samples (the screens' synthetic input)."""
    run_bundle(bundle_dir, "inference.json", {**overrides, "output_dir": str(folder), "n_samples": n_samples})
    return folder


def assert_inference_refused(bundle_dir: Path, overrides: dict, message: str, out: Path) -> None:
    """inference.json with ``overrides`` and ``output_dir=out`` fails naming ``message`` and leaves ``out`` unwritten.

    Every bad input must stop the run before any work starts, so no partial output may be left behind.
    """
    result = run_bundle(bundle_dir, "inference.json", {**overrides, "output_dir": str(out)}, check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not out.exists(), f"partial output left in {out}"


#: Resolution of the brain bundles' tiny runs: the 8 mm demo cohort (20x28x20).
BRAIN_TINY_RESOLUTION_MM = 8
#: That cohort centre-cropped so that every network's downsampling divides it.
BRAIN_TINY_SPATIAL_SHAPE = [16, 24, 16]
#: What the training data check expects of the 8 mm demo cohort (cropped to BRAIN_TINY_SPATIAL_SHAPE on purpose).
BRAIN_TINY_DATA = {"data_shape": [20, 28, 20], "data_spacing_mm": float(BRAIN_TINY_RESOLUTION_MM)}
#: Tiny sizes of the latent diffusion stack both brain bundles build (MONAI's AutoencoderKL and DiffusionModelUNet
#: under the same config ids); a bundle's helpers add their own keys over them.
TINY_LATENT_AUTOENCODER = {
    "spatial_shape": BRAIN_TINY_SPATIAL_SHAPE,
    "autoencoder_def#channels": [8, 8, 8],
    "autoencoder_def#norm_num_groups": 4,
}
TINY_LATENT_DIFFUSION = {
    "diffusion_def#channels": [16, 32],
    "diffusion_def#num_head_channels": [0, 16],
    "diffusion_def#norm_num_groups": 8,
}
