"""G(z) with a plain latent tensor and G.sample(n, seed), for every registered architecture."""

from __future__ import annotations

import pytest
import torch

from recon_core.errors import BadInput
from recon_core.generators import registry
from tests.conftest import tiny_prior


@pytest.mark.parametrize("arch", registry.names())
def test_plain_tensor_latent_and_sample(arch):
    g = tiny_prior(arch)
    latent = g.sample_latent(2, torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = g(latent)
    if len(latent) == 1:
        (z,) = latent.values()
        with torch.no_grad():
            assert torch.equal(g(z), ref)
            assert torch.allclose(g(z[0]), ref[:1], atol=1e-5)  # one latent without the batch axis (batch 1: float rounding)
        with pytest.raises(BadInput, match="expected \\(N, "):
            g(torch.zeros(2, z.shape[1] + 1))
    else:
        with pytest.raises(BadInput, match="pass a dict"):
            g(next(iter(latent.values())))
    s = g.sample(2, 3)
    assert torch.equal(s, ref) and not s.requires_grad  # the same draw as sample_latent with that seed
    assert 0 <= float(s.min()) and float(s.max()) <= 1
