"""`recon train-rtil`: train a generator (vanilla or RTIL) on a data source; resumable, and
data-parallel under `torchrun --nproc-per-node N -m recon_cli train-rtil ...`."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import List, Optional

import typer

from .common import ARCH_NAMES, handle_errors, resolve_device, set_threads
from .render import EventRenderer



def parse_ints(name: str, text: Optional[str]) -> Optional[List[int]]:
    """'1,2' -> [1, 2]; None stays None; anything else is a BadInput naming the option."""
    from recon_core.errors import BadInput

    if text is None:
        return None
    try:
        out = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        out = []
    if not out:
        raise BadInput(f"--{name} must be a comma-separated list of integers, got '{text}'")
    return out


def parse_config_json(text: Optional[str]):
    """--config-json -> (generator overrides, discriminator overrides, training overrides)."""
    from recon_core.errors import BadInput

    if not text:
        return {}, {}, {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(f"--config-json is not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(obj, dict):
        raise BadInput("--config-json must be a JSON object")
    disc, hyper = obj.pop("discriminator", {}), obj.pop("train", {})
    if not isinstance(disc, dict) or not isinstance(hyper, dict):
        raise BadInput("--config-json: 'discriminator' and 'train' must be JSON objects")
    return obj, disc, hyper


def canonical_command(ctx: typer.Context) -> str:
    """`recon train-rtil` with every option whose value differs from its default (the exact
    run, whoever launched it: a shell, torchrun or a test runner)."""
    parts = ["recon", ctx.info_name or "train-rtil"]
    for p in ctx.command.params:
        if getattr(p, "param_type_name", "") != "option" or p.name in ("quiet", "log_json", "debug"):
            continue
        v = ctx.params.get(p.name)
        if v is None or (v == p.default and not p.required):
            continue
        flag = max(p.opts, key=len)
        if getattr(p, "is_flag", False):
            parts.append(flag)
        else:
            parts += [flag, str(v)]
    return shlex.join(parts)


@handle_errors
def train_rtil(
    ctx: typer.Context,
    arch: str = typer.Option(..., help=f"Generator architecture: {'|'.join(ARCH_NAMES)}."),
    data: str = typer.Option(..., help="Data source: fashion-mnist | mnist5k | folder:PATH (see docs/training.md)."),
    out: Path = typer.Option(..., help="Run directory (checkpoint.pt, trainer_state.pt, samples_*.png, run.json)."),
    mode: str = typer.Option("vanilla", help="vanilla | rtil-ilo | rtil-mgan."),
    steps: int = typer.Option(1000, help="Generator updates in total (a resumed run continues up to this)."),
    batch: int = typer.Option(32, help="Global batch size (split over torchrun processes)."),
    resolution: int = typer.Option(32, help="Image size in pixels."),
    channels: Optional[int] = typer.Option(None, help="Image channels 1|3.", show_default="the data's: 1 for (Fashion-)MNIST, 3 for folders"),
    layers: Optional[str] = typer.Option(None, help="rtil-ilo: cut indices perturbed, comma-separated.", show_default="1,2 (stylegan2: 2,3)"),
    sigma: Optional[float] = typer.Option(None, help="rtil-ilo: std of the noise z1 added at each layer.", show_default="1.0"),
    codes: Optional[str] = typer.Option(None, help="rtil-mgan: numbers of mixed codes N, comma-separated (one mixed generator each).", show_default="10"),
    mgan_layer: Optional[int] = typer.Option(None, help="rtil-mgan: cut index where the codes are mixed.", show_default="2"),
    lr: Optional[float] = typer.Option(None, help="Generator (VAE: model) learning rate.", show_default="family's, see docs/training.md"),
    lr_d: Optional[float] = typer.Option(None, help="Discriminator learning rate.", show_default="family's"),
    checkpoint_every: int = typer.Option(500, help="Write checkpoint.pt + trainer_state.pt every K steps (and at the end)."),
    sample_every: int = typer.Option(500, help="Write samples_XXXXXX.png every K steps (and at the end)."),
    config_json: Optional[str] = typer.Option(None, help="JSON object of generator config overrides (e.g. widths); keys 'discriminator' and 'train' hold D widths and training options.", show_default="none"),
    resume: bool = typer.Option(False, help="Continue the run in --out exactly where it stopped."),
    force: bool = typer.Option(False, help="Start over in a non-empty --out (deletes its run files)."),
    seed: int = typer.Option(0, help="Seed of everything random (initialisation, latents, data order)."),
    device: str = typer.Option("auto", help="auto|cpu|cuda."),
    threads: int = typer.Option(0, help="CPU threads for torch; 0 = torch's default (all cores; torchrun sets 1 per process)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary on stderr."),
    log_json: bool = typer.Option(False, help="Progress as JSON lines on stderr."),
    debug: bool = typer.Option(False, help="Print tracebacks."),
):
    """Train a prior (any architecture), vanilla or with RTIL; resumable.

    Trains on a data source, plainly or with RTIL (regularised training of intermediate
    layers), and writes its checkpoint, sample grids and run.json into --out. Refuses a non-empty
    --out unless --resume or --force."""
    from recon_core.errors import BadInput
    from recon_core.training.trainer import TrainConfig, train

    if resume and force:
        raise BadInput("give --resume (continue) or --force (start over), not both")
    dev = resolve_device(device)
    set_threads(threads)
    gen, disc, hyper = parse_config_json(config_json)
    cfg = TrainConfig(
        arch=arch, data=data, out=str(out), mode=mode, steps=steps, batch=batch, resolution=resolution, channels=channels,
        layers=parse_ints("layers", layers), sigma=sigma, codes=parse_ints("codes", codes), mgan_layer=mgan_layer,
        lr=lr, lr_d=lr_d, checkpoint_every=checkpoint_every, sample_every=sample_every, seed=seed, device=dev,
        resume=resume, force=force, generator=gen, discriminator=disc, hyper=hyper,
        command=canonical_command(ctx),
    )
    with EventRenderer(quiet=quiet, log_json=log_json) as renderer:
        record = train(cfg, on_event=renderer)
    if not quiet and int(os.environ.get("RANK", 0)) == 0:  # one summary under torchrun
        last = record.get("last_stats", {})
        typer.echo(
            f"{record['steps_done']} steps in {record['wall_time_s']:.1f} s; checkpoint: {Path(out) / 'checkpoint.pt'}; "
            f"last losses: {json.dumps(last)}",
            err=True,
        )
