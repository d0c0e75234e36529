"""`recon reconstruct`: recover an image from measurements with a generative prior."""

from __future__ import annotations

import json
import time
from dataclasses import fields
from pathlib import Path
from typing import Optional

import typer

from .common import (
    NOISE_CONVENTIONS, OPS, SOLVER_SEED_OFFSET, check_free, handle_errors, operator_params, resolve_device, set_threads,
)
from .render import EventRenderer, print_summary

METRICS_SCHEMA = 1
OUTPUT_FILES = ("x_hat.png", "compare.png", "metrics.json")


def build_config(method: str, arch: str, overrides: dict):
    """The method's config: its paper defaults (per architecture where the paper gives them),
    then every option the user set. An option the method does not have is a BadInput."""
    from recon_core.errors import BadInput
    from recon_core.solvers import get_method
    from recon_core.solvers.surgery import PAPER_SETTINGS

    cfg_cls, solve = get_method(method)
    cfg = cfg_cls()
    if method == "surgery" and arch in PAPER_SETTINGS:
        cfg.lr, cfg.cut = PAPER_SETTINGS[arch]
    names = {f.name for f in fields(cfg)}
    for k, v in overrides.items():
        if v is None:
            continue
        if k not in names:
            raise BadInput(f"--{k.replace('_', '-')} does not apply to --method {method}")
        setattr(cfg, k, v)
    return cfg, solve


def run_one(
    *, image: Optional[Path], measurements: Optional[Path], truth: Optional[Path], out: Path, prior_name: str,
    method: str, overrides: dict, op: str, op_params: dict, noise_std: float, noise_convention: str, fit: str,
    seed: int, device: str, force: bool, on_event, args: dict,
) -> dict:
    """Reconstruct one image (or one measurements file) into ``out``; returns the metrics dict.

    Files are written atomically; metrics.json is written last, so its presence marks a
    complete output folder."""
    import torch

    from recon_core import __version__
    from recon_core.errors import BadInput
    from recon_core.generators.zoo import resolve_prior
    from recon_core.images import atomic_write_text, fit_image, load_image, make_grid, save_image
    from recon_core.measurements import load_measurements, save_measurements
    from recon_core.metrics import compute_metrics
    from recon_core.solvers import Problem
    from recon_core.solvers.common import config_dict, seeded_rng  # noqa: F401

    from .measure import make_measurements

    t0 = time.perf_counter()
    if (image is None) == (measurements is None):
        raise BadInput("give either an IMAGE or --measurements FILE (not both, not neither)")
    if noise_convention not in NOISE_CONVENTIONS:
        raise BadInput(f"--noise-convention must be one of {', '.join(NOISE_CONVENTIONS)}, got '{noise_convention}'")
    out_files = [out / f for f in OUTPUT_FILES] + ([out / "measurements.npz"] if image is not None else [])
    check_free(out_files, force)
    torch.manual_seed(seed)
    prior = resolve_prior(prior_name, device=device)
    c, r = prior.meta.channels, prior.meta.resolution
    cfg, solve = build_config(method, prior.meta.architecture, overrides)
    if hasattr(cfg, "cut"):
        prior.check_cut(cfg.cut)

    x = None
    image_info = None
    if image is not None:
        x = fit_image(load_image(image, channels=c), r, fit).to(device)
        image_info = {"path": str(image), "fit": fit, "shape": list(x.shape[1:])}
        A, y, noise = make_measurements(x, op, op_params, seed, noise_std, noise_convention, device)
    else:
        y, A, noise, meta = load_measurements(measurements, device=device)
        image_info = meta.get("image")
        if tuple(A.img_shape) != (c, r, r):
            raise BadInput(f"measurements are of {tuple(A.img_shape)} images but prior '{prior_name}' makes {(c, r, r)}")
        if truth is not None:
            x = fit_image(load_image(truth, channels=c), r, fit).to(device)
    problem = Problem(A, y, noise.std(A))
    result = solve(problem, prior, cfg, on_event=on_event, seed=seed + SOLVER_SEED_OFFSET)

    out.mkdir(parents=True, exist_ok=True)
    x_hat = result.x_hat.clamp(0, 1)
    save_image(x_hat, out / "x_hat.png")
    panels = [p.cpu() for p in (x, A.preview(y), x_hat) if p is not None]
    grid = make_grid(panels, nrow=len(panels))
    if r < 256:  # small priors: enlarge (nearest) so the comparison is legible
        grid = torch.nn.functional.interpolate(grid, scale_factor=256 // r, mode="nearest")
    save_image(grid, out / "compare.png")
    written = {"x_hat": str(out / "x_hat.png"), "compare": str(out / "compare.png")}
    if image is not None:
        save_measurements(out / "measurements.npz", y, A, noise, image=image_info)
        written["measurements"] = str(out / "measurements.npz")

    if x is not None:
        metrics = compute_metrics(x, x_hat, y, A)
    else:
        reason = "no ground truth (reconstructing from --measurements without --truth)"
        with torch.no_grad():
            res = float((A.A(x_hat) - y).norm() / y.norm().clamp_min(1e-12))
        metrics = {"psnr": None, "ssim": None, "lpips": None, "mse": None, "residual": res,
                   "psnr_reason": reason, "ssim_reason": reason, "lpips_reason": reason, "mse_reason": reason}
    record = {
        "schema_version": METRICS_SCHEMA,
        "recon_version": __version__,
        "torch_version": torch.__version__,
        "device": device,
        "seed": seed,
        "args": args,
        "image": image_info,
        "prior": {"name": prior_name, **prior.meta.to_dict()},
        "operator": A.spec(),
        "noise": noise.to_dict(A),
        "measurements": {"m": A.m, "n": A.n, "ratio": A.m / A.n, "file": str(measurements) if measurements else written.get("measurements")},
        "method": {"name": method, "config": config_dict(cfg)},
        "restarts": {"losses": result.losses, "best": result.best_restart, "diverged": result.diverged},
        "metrics": metrics,
        "extra": result.extra,
        "wall_time": {"solve": result.wall_time, "total": time.perf_counter() - t0},
        "history": result.history,
        "outputs": {**written, "metrics": str(out / "metrics.json")},
    }
    atomic_write_text(out / "metrics.json", json.dumps(record, indent=2, default=float) + "\n")
    return record


@handle_errors
def reconstruct(
    image: Optional[Path] = typer.Argument(None, help="Image to measure and reconstruct (omit with --measurements)."),
    measurements: Optional[Path] = typer.Option(None, help="Reconstruct from a file written by `recon measure`."),
    truth: Optional[Path] = typer.Option(None, help="Ground-truth image for metrics when using --measurements."),
    out: Optional[Path] = typer.Option(None, help="Output folder.", show_default="recon_out/<image or measurements name>"),
    prior: str = typer.Option("dcgan-faces-64", help="Zoo name (see `recon priors`) or path to a checkpoint."),
    method: str = typer.Option("surgery", help="Inversion method: csgm|surgery."),
    cut: Optional[int] = typer.Option(None, help="Surgery cut index c (0 = CSGM).", show_default="paper's, 1 for DCGAN"),
    lr: Optional[float] = typer.Option(None, help="Learning rate.", show_default="method's, 0.1 for csgm and DCGAN surgery"),
    steps: Optional[int] = typer.Option(None, help="Optimiser steps.", show_default="csgm 500, surgery 25"),
    restarts: Optional[int] = typer.Option(None, help="Random restarts, run as one batch.", show_default="3"),
    optimizer: Optional[str] = typer.Option(None, help="adam|lbfgs.", show_default="csgm adam, surgery lbfgs"),
    init: Optional[str] = typer.Option(None, help="Initial state: prior|cn|zero|normal|uniform.", show_default="csgm prior, surgery cn"),
    z_reg: Optional[float] = typer.Option(None, help="CSGM lambda in lambda ||z||^2.", show_default="0"),
    op: str = typer.Option("cs-gaussian", "--op", help=f"Forward operator: {'|'.join(OPS)}."),
    ratio: float = typer.Option(0.1, help="m/n for cs-* operators."),
    frac: float = typer.Option(0.1, help="Fraction of pixels kept (inpaint)."),
    mask: str = typer.Option("random", help="Inpainting mask: random|box|PATH to a PNG (white = kept)."),
    factor: int = typer.Option(4, help="Downsampling factor (superres, 2-16)."),
    kernel_size: int = typer.Option(9, help="Blur kernel size (blur, odd)."),
    noise_std: float = typer.Option(0.0, help="Noise level (see --noise-convention)."),
    noise_convention: str = typer.Option("per-entry", help="per-entry: std of each entry; cs-norm: sqrt(E||eta||^2) at 64 px, scaled."),
    fit: str = typer.Option("crop-resize", help="Fit the image to the prior: crop-resize|crop|resize|pad."),
    seed: int = typer.Option(0, help="Seed of everything random (operator, noise, restarts)."),
    device: str = typer.Option("auto", help="auto|cpu|cuda."),
    threads: int = typer.Option(0, help="CPU threads for torch; 0 = torch's default (all cores). Use 1 when running several jobs side by side."),
    force: bool = typer.Option(False, help="Overwrite existing output files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary on stderr."),
    json_out: bool = typer.Option(False, "--json", help="Print metrics.json to stdout."),
    log_json: bool = typer.Option(False, help="Progress as JSON lines on stderr."),
    debug: bool = typer.Option(False, help="Print tracebacks."),
):
    """Measure IMAGE (or load --measurements) and reconstruct it; writes x_hat.png, compare.png,
    metrics.json (and measurements.npz when measured here) into --out."""
    args = {k: (str(v) if isinstance(v, Path) else v) for k, v in locals().items()}
    dev = resolve_device(device)
    set_threads(threads)
    stem = (image or measurements or Path("recon")).stem
    out = out or Path("recon_out") / stem
    overrides = {"cut": cut, "lr": lr, "steps": steps, "restarts": restarts, "optimizer": optimizer, "init": init, "z_reg": z_reg}
    with EventRenderer(quiet=quiet, log_json=log_json) as renderer:
        record = run_one(
            image=image, measurements=measurements, truth=truth, out=out, prior_name=prior, method=method,
            overrides=overrides, op=op, op_params=operator_params(op, ratio, frac, mask, factor, kernel_size),
            noise_std=noise_std, noise_convention=noise_convention, fit=fit, seed=seed, device=dev, force=force,
            on_event=renderer, args=args,
        )
    if json_out:
        typer.echo(json.dumps(record, default=float))
    print_summary(record["metrics"], record["outputs"], quiet=quiet)
