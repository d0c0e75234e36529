"""Shared fixtures: tiny random-weight priors and real example images."""

from __future__ import annotations

import os

import pytest
import torch

from recon_core.generators import registry
from recon_core.generators.checkpoints import build_adapter, save_checkpoint

# property tests draw the same examples on every run (CI must not turn red on a new random draw);
# RECON_HYPOTHESIS_RANDOM=1 explores fresh examples instead
from hypothesis import settings as _hyp_settings  # noqa: E402

_hyp_settings.register_profile("recon", derandomize=os.environ.get("RECON_HYPOTHESIS_RANDOM") != "1")
_hyp_settings.load_profile("recon")

# tests use tiny tensors: intra-op threads only add spin-wait overhead (and on a shared 2-core
# machine, oversubscription slows small ops ~5x)
torch.set_num_threads(1)


def load_benchmark(name: str):
    """Import benchmarks/NAME.py as a module (the benchmarks folder is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tiny_prior(arch: str = "dcgan", seed: int = 0):
    """A tiny random-weight adapter (eval mode): the registry entry's tiny config."""
    torch.manual_seed(seed)
    g = build_adapter(arch, **registry.get(arch).tiny)
    # give BatchNorm non-trivial statistics so eval mode is exercised
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return g.eval()


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """In-process CLI runs may call torch.set_num_threads (--threads): undo it after each test."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path):
    """Every test runs in its own empty folder: default output paths never touch the repo.
    (os.chdir rather than monkeypatch, so tests' own monkeypatches are undone first.)"""
    old = os.getcwd()
    os.chdir(tmp_path)
    yield
    os.chdir(old)


@pytest.fixture
def tiny_dcgan():
    return tiny_prior("dcgan")


@pytest.fixture
def tiny_ckpt(tmp_path):
    """Path of a tiny DCGAN saved in the project's own format (32 px RGB)."""
    path = tmp_path / "tiny_dcgan.pt"
    save_checkpoint(tiny_prior("dcgan"), path)
    return path


@pytest.fixture(scope="session")
def face64():
    """The shipped astronaut face crop at 64 px, (1, 3, 64, 64)."""
    from recon_core.images import example_image

    return example_image(size=64)
