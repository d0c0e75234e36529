"""`recon measure`: simulate measurements y = A x + noise of an image and save them (.npz)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .common import BoundaryOpt, DebugOpt, FactorOpt, FitOpt, FracOpt, KernelOpt, MaskOpt, NoiseConvOpt, NoiseStdOpt, OpOpt, RatioOpt  # noqa: E501
from .common import check_noise_convention, check_operator_options, check_free, handle_errors, operator_params


def make_measurements(x, op, params, seed, noise_std, noise_convention, device="cpu", max_memory=None):
    """Build the operator for image x (1, C, H, W) and simulate y -> (A, y, noise)
    (recon_core.pipeline.simulate: the seed policy of every command)."""
    from recon_core.pipeline import simulate

    problem, noise = simulate(x, op, params, seed, noise_std, noise_convention, device, max_memory)
    return problem.A, problem.y, noise


@handle_errors
def measure(
    ctx: typer.Context,
    image: Path = typer.Argument(..., help="Image to measure (PNG/JPEG/...)."),
    output: Path = typer.Option(..., "--output", "-o", help="Measurements file to write (.npz)."),
    op: OpOpt = "cs-gaussian",
    ratio: RatioOpt = 0.1,
    frac: FracOpt = 0.1,
    mask: MaskOpt = "random",
    factor: FactorOpt = 4,
    kernel_size: KernelOpt = 9,
    blur_boundary: BoundaryOpt = "circular",
    noise_std: NoiseStdOpt = 0.0,
    noise_convention: NoiseConvOpt = "per-entry",
    prior: str = typer.Option("dcgan-faces-64", help="Prior whose resolution/channels the image is fitted to."),
    size: int = typer.Option(0, help="Fit to SIZE x SIZE instead of the prior's resolution (0 = prior's)."),
    fit: FitOpt = "crop-resize",
    seed: int = typer.Option(0, help="Seed of the operator and the noise."),
    force: bool = typer.Option(False, help="Overwrite existing files."),
    debug: DebugOpt = False,
):
    """Simulate measurements y = A x + noise of IMAGE and save them (.npz).

    Writes y with the operator and noise specs to an
    .npz file (plus a preview PNG beside it when the measurements can be shown as an image)."""
    from recon_core.errors import BadInput
    from recon_core.generators.zoo import prior_image_shape
    from recon_core.images import fit_image, load_image, save_image
    from recon_core.measurements import save_measurements

    check_noise_convention(noise_convention)
    check_operator_options(ctx, op)
    if output.suffix != ".npz":
        raise BadInput(f"--output must end in .npz, got '{output}'")
    preview_path = output.with_suffix(".png")
    check_free([output, preview_path], force)
    c, r, _ = prior_image_shape(prior)
    if size < 0:
        raise BadInput(f"--size must be >= 0, got {size}")
    r = size or r
    x = fit_image(load_image(image, channels=c), r, fit)
    A, y, noise = make_measurements(x, op, operator_params(op, ratio, frac, mask, factor, kernel_size, blur_boundary), seed, noise_std, noise_convention)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_measurements(output, y, A, noise, image={"path": str(image), "fit": fit, "shape": list(x.shape[1:])})
    pv = A.preview(y)
    written = {"measurements": str(output)}
    if pv is not None:
        save_image(pv, preview_path)
        written["preview"] = str(preview_path)
    typer.echo(json.dumps({**written, "operator": A.spec(), "noise": noise.to_dict(A), "m": A.m, "n": A.n}))
