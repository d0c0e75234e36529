"""`recon cut-sweep`: pick Generator Surgery's cut on validation images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .common import ARCH_NAMES, FORMAT_NAMES, SWEEP_OPS
from .common import DebugOpt, DeviceOpt, FitOpt, LogJsonOpt, QuietOpt, ThreadsOpt  # noqa: E501
from .common import check_noise_convention, NOISE_SEED_OFFSET, handle_errors, prior_options, resolve_device, set_threads
from .render import EventRenderer


def print_table(doc: dict, cut_list: List[int], n_images: int) -> None:
    """The sweep's mean PSNR table on stderr, the recommended cut of each ratio starred."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"mean PSNR (dB) over {n_images} images; * = recommended cut")
    t.add_column("ratio")
    for cut in cut_list:
        t.add_column(f"c={cut}", justify="right")
    for ratio, row in doc["summary"]["table"].items():
        best = doc["summary"]["recommended_cut"].get(ratio)
        t.add_row(ratio, *[f"{row[str(c)]['psnr_mean']:.2f}±{row[str(c)]['psnr_std']:.2f}" + ("*" if c == best else "")
                           for c in cut_list])
    Console(stderr=True).print(t)


@handle_errors
def cut_sweep(
    positional: Optional[List[str]] = typer.Argument(None, metavar="IMAGES...", help="Validation images: files, folders or globs (as for `recon reconstruct`)."),
    images: Optional[List[str]] = typer.Option(None, "--images", help="Validation images, as an option (repeatable; same as the positional IMAGES)."),
    out: Path = typer.Option(..., help="Output folder for sweep.json, sweep.csv, sweep.png."),
    prior: str = typer.Option("dcgan-faces-64", help="Zoo name or checkpoint path."),
    arch: Optional[str] = typer.Option(None, help=f"Architecture of a --prior PATH when its format does not say: {', '.join(ARCH_NAMES)}."),
    prior_format: Optional[str] = typer.Option(None, help=f"Checkpoint format of a --prior PATH: {', '.join(FORMAT_NAMES)}.", show_default="detected"),
    class_idx: Optional[int] = typer.Option(None, "--class", help="BigGAN class index."),
    op: str = typer.Option("cs-gaussian", "--op", help=f"{'|'.join(SWEEP_OPS)}."),
    ratios: str = typer.Option("0.05,0.1,0.2", help="m/n values (cs-*) or kept fractions (inpaint), comma-separated."),
    cuts: str = typer.Option("0-4", help="Cuts to try: a range '0-4' or a list '0,1,3'."),
    noise_std: float = typer.Option(0.1, help="Noise level (see --noise-convention)."),
    noise_convention: str = typer.Option("cs-norm", help="per-entry|cs-norm."),
    steps: int = typer.Option(25, help="Surgery steps (L-BFGS outer steps)."),
    restarts: int = typer.Option(3, help="Restarts per cell."),
    lr: Optional[float] = typer.Option(None, help="Learning rate.", show_default="paper's for the architecture, else 0.1"),
    optimizer: str = typer.Option("lbfgs", help="lbfgs|adam."),
    init: str = typer.Option("cn", help="cn|zero|normal|uniform."),
    fit: FitOpt = "crop-resize",
    seed: int = typer.Option(0, help="Seed of operators, noise and restarts."),
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 0,
    force: bool = typer.Option(False, help="Start over, discarding an existing sweep in --out."),
    quiet: QuietOpt = False,
    log_json: LogJsonOpt = False,
    debug: DebugOpt = False,
):
    """Choose Generator Surgery's cut on validation images (resumable sweep).

    Runs Surgery at every cut for every ratio and validation image; writes sweep.json
    (per image, ratio, cut: PSNR, SSIM, LPIPS, residual, time), sweep.csv, sweep.png (mean PSNR vs
    cut, one line per ratio, std bands) and recommend a cut per ratio. Rerunning resumes: finished
    cells are skipped."""
    from recon_core.errors import BadInput
    from recon_core.generators.zoo import resolve_prior
    from recon_core.images import fit_image, load_image
    from recon_core.operators import NoiseSpec
    from recon_core.pipeline import build_config
    from recon_core.sweep import RATIO_PARAM, parse_cuts, parse_ratios, plot, run_sweep, write_csv

    from .batch import expand_inputs, output_names

    if op not in RATIO_PARAM:
        raise BadInput(f"cut-sweep --ratios applies to {', '.join(RATIO_PARAM)}; got --op {op}")
    check_noise_convention(noise_convention)
    dev = resolve_device(device)
    set_threads(threads)
    items = list(positional or []) + list(images or [])
    if not items:
        raise BadInput("give the validation images: recon cut-sweep IMAGES... --out DIR (files, folders or globs)")
    paths, _ = expand_inputs(items, None)
    g = resolve_prior(prior, device=dev, **prior_options(arch, prior_format, class_idx, None))
    cut_list = parse_cuts(cuts, g.cut_points)
    ratio_list = parse_ratios(ratios)
    # the config `recon reconstruct --method surgery --preset paper` resolves (lr: the paper's for the architecture)
    cfg, _ = build_config("surgery", g.meta.architecture, {"lr": lr, "steps": steps, "restarts": restarts, "optimizer": optimizer,
                                                           "init": init}, g.cut_points, preset="paper")
    lr = cfg.lr
    c, r = g.meta.channels, g.meta.resolution
    loaded = [(name, fit_image(load_image(p, channels=c), r, fit).to(dev)) for name, p in zip(output_names(paths), paths)]
    noise = NoiseSpec(noise_convention, noise_std, seed=seed + NOISE_SEED_OFFSET)
    settings = {"prior": prior, "op": op, "noise": {"convention": noise_convention, "value": noise_std}, "seed": seed,
                "fit": fit, "images": [str(p) for p in paths], "config": {"lr": lr, "steps": steps, "restarts": restarts,
                                                                            "optimizer": optimizer, "init": init}}
    out.mkdir(parents=True, exist_ok=True)

    def progress(cell):
        if not quiet:
            typer.echo(f"[{cell['done']}/{cell['total']}] {cell['image']} ratio {cell['ratio']:g} cut {cell['cut']}: "
                       f"PSNR {cell['psnr']:.2f} dB ({cell['time_s']:.1f} s)", err=True)

    with EventRenderer(quiet=True, log_json=log_json) as renderer:
        doc = run_sweep(g, loaded, op=op, ratios=ratio_list, cuts=cut_list, noise=noise, seed=seed, config=cfg,
                        path=out / "sweep.json", settings=settings, force=force, on_event=renderer, on_cell=progress)
    write_csv(doc, out / "sweep.csv")
    plot(doc, out / "sweep.png")
    if not quiet:
        print_table(doc, cut_list, len(loaded))
    typer.echo(json.dumps({"recommended_cut": doc["summary"]["recommended_cut"], "sweep": str(out / "sweep.json"),
                           "csv": str(out / "sweep.csv"), "plot": str(out / "sweep.png")}))
