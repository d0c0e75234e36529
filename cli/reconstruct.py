"""`recon reconstruct`: recover an image from measurements with a generative prior."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List, Optional

import typer

from recon_core.pipeline import OBSERVABLE_OPS, OUTPUT_FILES, Pipeline

from .common import BoundaryOpt, DebugOpt, DeviceOpt, FactorOpt, FitOpt, FracOpt, KernelOpt, LogJsonOpt, MaskOpt, NoiseConvOpt, NoiseStdOpt, OpOpt, QuietOpt, RatioOpt, ThreadsOpt  # noqa: E501
from .common import ARCH_NAMES, FAST_METHOD_NAMES, FORMAT_NAMES, METHOD_NAMES
from .common import (
    LOG_JSON, check_free, check_noise_convention, check_operator_options, handle_errors, operator_params, prior_options,
    resolve_device, say, set_threads,
)
from .options import PANEL_INPUT, PANEL_METHOD, PANEL_OUTPUT, PANEL_PRIOR, PANEL_RUN
from .render import EventRenderer, print_summary


class Job(Pipeline):
    """recon_core.pipeline.Pipeline as the CLI runs it: notes go to stderr (or --log-json)."""

    def __init__(self, **kwargs):
        self.kwargs = dict(kwargs)  # a --jobs worker builds its own Job from these
        super().__init__(**kwargs, on_note=say)


_WORKER_JOB: Optional[Job] = None


#: images per batch of ``--batch-images 0`` (auto)
AUTO_BATCH = 8


def _worker_init(job_kwargs: dict, threads: int, log_json: bool = False) -> None:
    """A --jobs worker process: its own torch threads and its own Job (prior loaded once); its
    stderr lines follow the parent's --log-json."""
    global _WORKER_JOB
    import signal

    import torch

    LOG_JSON["on"] = log_json
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    torch.set_num_threads(threads)
    _WORKER_JOB = Job(**job_kwargs)


def _worker_solve(image: str, out: str) -> tuple:
    """Reconstruct one image into ``out`` in a worker: (metrics or None, failure reason or None,
    seconds)."""
    t0 = time.perf_counter()
    try:
        # force: the parent has checked the folder (--force / --resume decided it may be written)
        return _WORKER_JOB.run(Path(image), Path(out), force=True)["metrics"], None, time.perf_counter() - t0
    except Exception as e:
        return None, _failure(e), time.perf_counter() - t0


def _failure(e: Exception) -> str:
    """A batch row's one-line reason for an exception."""
    from recon_core.errors import ReconError

    if isinstance(e, ReconError):
        return str(e)
    return " ".join(f"internal error: {type(e).__name__}: {e}".split())  # never lose the batch to one bad image


def jobs_threads(jobs: int, threads: int) -> int:
    """Torch threads per --jobs worker: --threads if given, else the CPU cores shared out (>= 1)."""
    return threads or max(1, (os.cpu_count() or 1) // jobs)


def _triage(job: Job, inputs: List[Path], names: List[str], root: Path, *, force: bool, resume: bool, finish) -> list:
    """The batch's images that need a solve, as (i, out, row); the others (complete under
    --resume, made with other settings, or refused) are recorded with ``finish`` at once."""
    from .batch import complete_record

    todo = []
    for i, (path, name) in enumerate(zip(inputs, names)):
        out = root / name
        row = {"input": str(path), "out": str(out), "status": "ok", "reason": None, "metrics": None, "time_s": None}
        t0 = time.perf_counter()
        try:
            rec, why = complete_record(out, job.identity, inputs[i]) if (resume and not force) else (None, None)
            if rec is not None:
                row.update(status="skipped", reason="complete (--resume)", metrics=rec.get("metrics"))
            elif why is not None:
                row.update(status="failed", reason=why)
            else:
                if not force and not resume:
                    check_free([out / f for f in OUTPUT_FILES], force=False)
                todo.append((i, out, row))
                continue
        except Exception as e:
            row.update(status="failed", reason=_failure(e))
        finish(i, row, t0)
    return todo


def run_batch(job: Job, inputs: List[Path], names: List[str], root: Path, *, force: bool, resume: bool,
              shard, renderer, quiet: bool, batch_images: int = 1, jobs: int = 1, threads: int = 0) -> int:
    """Reconstruct every input into root/<name>/, recording each outcome; a failure never stops
    the batch. With ``batch_images`` K > 1, every K images that loaded are solved as one batch
    (same results as one by one, up to float rounding). With ``jobs`` N > 1, N worker processes
    (``threads`` torch threads each, see jobs_threads) solve the images one each at a time (same
    results as one by one, up to float rounding). Writes the summary files (also on Ctrl-C).
    Returns the exit code: 0 all ok or skipped, 1 some failed, 130 interrupted."""
    from .batch import write_summary

    rows = {}  # input index -> summary row; listed in input order
    chunk = []  # (i, out, row, task) of the loaded images waiting to be solved together

    def finish(i: int, row: dict, t0: float, share: float = 0.0) -> None:
        row["time_s"] = round(time.perf_counter() - t0 + share, 3)
        rows[i] = row
        renderer.advance()
        if not quiet or LOG_JSON["on"]:
            say("image", f"[{len(rows)}/{len(inputs)}] {row['status']}: {inputs[i]}" + (f" ({row['reason']})" if row["reason"] else ""),
                **{k: row.get(k) for k in ("input", "out", "status", "reason", "metrics", "time_s")}, done=len(rows),
                total=len(inputs))

    def solve_chunk():
        t_solve = time.perf_counter()
        try:
            renderer.context = {"images": [str(inputs[t[0]]) for t in chunk]}  # --log-json: which images an event is about
            results = job.solve_all([t[3] for t in chunk], on_event=renderer)
        except Exception as e:  # the whole batch failed (not one image's divergence)
            results = [e] * len(chunk)
        share = (time.perf_counter() - t_solve) / len(chunk)
        for (i, out, row, task), result in zip(chunk, results):
            t1 = time.perf_counter()
            try:
                if isinstance(result, Exception):
                    raise result
                row["metrics"] = job.write(out, task, result)["metrics"]
            except Exception as e:
                row.update(status="failed", reason=_failure(e))
            finish(i, row, t1, share + task.seconds)
        chunk.clear()

    interrupted = False
    todo = []
    try:
        # first the images that need no solve (complete, refused), then the rest K at a time
        todo = _triage(job, inputs, names, root, force=force, resume=resume, finish=finish)
        if jobs > 1 and len(todo) > 1:
            _solve_in_workers(job, inputs, todo, jobs, threads, finish)
            todo = []
        for n, (i, out, row) in enumerate(todo):
            t0 = time.perf_counter()
            try:
                chunk.append((i, out, row, job.prepare(image=inputs[i])))
            except Exception as e:
                row.update(status="failed", reason=_failure(e))
                finish(i, row, t0)
            if chunk and (len(chunk) == batch_images or n == len(todo) - 1):
                solve_chunk()
    except KeyboardInterrupt:
        interrupted = True
        for i, _, row, _ in chunk:
            if i not in rows:
                row.update(status="failed", reason="interrupted")
                rows[i] = row
        for i, _, row in todo:
            if i not in rows and jobs > 1:
                row.update(status="failed", reason="interrupted")
                rows[i] = row
    rows = [rows[i] for i in sorted(rows)]
    jpath, _ = write_summary(root, rows, shard, interrupted)
    done = [r["input"] for r in rows if r["status"] in ("ok", "skipped")]
    failed = [r for r in rows if r["status"] == "failed"]
    if interrupted:
        say("interrupted", f"{len(done)} image(s) complete, {len(inputs) - len(done)} not; rerun with --resume to continue ({jpath})",
            summary=str(jpath))
        return 130
    if not quiet or LOG_JSON["on"]:
        say("done", f"{len(done)} ok/skipped, {len(failed)} failed; summary: {jpath}", summary=str(jpath),
            ok_or_skipped=len(done), failed=len(failed))
    return 1 if failed else 0


def _solve_in_workers(job: Job, inputs: List[Path], todo: list, jobs: int, threads: int, finish) -> None:
    """Solve the ``todo`` images [(i, out, row)] in ``jobs`` spawned worker processes, calling
    ``finish(i, row, t0, seconds)`` as each one completes (in completion order)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: a forked child of a process that has run torch's OpenMP pool can hang
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=ctx, initializer=_worker_init,
                               initargs=(job.kwargs, jobs_threads(jobs, threads), LOG_JSON["on"]))
    try:
        futures = {pool.submit(_worker_solve, str(inputs[i]), str(out)): (i, row) for i, out, row in todo}
        for fut in as_completed(futures):
            i, row = futures[fut]
            try:
                metrics, reason, seconds = fut.result()
            except Exception as e:  # the worker itself died (e.g. out of memory)
                metrics, reason, seconds = None, _failure(e), 0.0
            if reason is None:
                row["metrics"] = metrics
            else:
                row.update(status="failed", reason=reason)
            finish(i, row, time.perf_counter(), seconds)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_run(ctx, *, inputs, is_batch, measurements, truth, observed, op, mask, method, preset, noise_convention,
               resume, shard_kn, batch_images, jobs) -> int:
    """Refuse (BadInput / UnknownName) a `reconstruct` call whose options contradict each other,
    before any heavy work; returns the --batch-images to use (0 = auto resolved)."""
    from recon_core.errors import BadInput, UnknownName
    from recon_core.solvers import BATCH_METHODS, METHODS, PRESET_NAMES

    check_noise_convention(noise_convention)
    if measurements is not None and inputs:
        raise BadInput("give either IMAGE(s) or --measurements FILE (not both)")
    if measurements is None and not inputs:
        raise BadInput("give either an IMAGE or --measurements FILE (not both, not neither)")
    if (resume or shard_kn) and not is_batch:
        raise BadInput("--resume and --shard apply to batches (several images, a folder, a glob or --list)")
    if observed:
        if measurements is not None:
            raise BadInput("--observed applies to IMAGE(s), not to --measurements")
        if op not in OBSERVABLE_OPS:
            raise BadInput(f"--observed works with --op {'|'.join(OBSERVABLE_OPS)} (an image can be y only for those), not --op {op}")
        if op == "inpaint" and mask in ("random", "box"):
            raise BadInput("--observed --op inpaint needs --mask FILE (white = kept pixels): the damaged pixels of a photo are not random")
        if truth is not None:
            raise BadInput("--truth applies to --measurements; an --observed run has no ground truth")
    if measurements is None:  # a measurements file brings its own operator
        check_operator_options(ctx, op)
    if preset not in PRESET_NAMES:  # checked before any heavy work
        raise UnknownName("preset", preset, PRESET_NAMES)
    if batch_images < 0:
        raise BadInput(f"--batch-images must be >= 1 (or 0 for auto), got {batch_images}")
    if jobs < 1:
        raise BadInput(f"--jobs must be >= 1, got {jobs}")
    if batch_images == 0:  # auto: batching pays for every batched method on a CPU (README 'Speed')
        batch_images = AUTO_BATCH if method in BATCH_METHODS and jobs == 1 else 1
    if jobs > 1 and batch_images > 1:
        raise BadInput("--jobs and --batch-images do not combine: use one or the other")
    if batch_images > 1 and method in METHODS and method not in BATCH_METHODS:
        raise BadInput(f"--batch-images applies to the methods with a batched solver ({', '.join(BATCH_METHODS)}), not --method {method}")
    return batch_images


def _reconstruct_batch(job_kwargs: dict, inputs: List[Path], root: Path, renderer, *, shard_kn, force: bool, resume: bool,
                       quiet: bool, batch_images: int, jobs: int, threads: int, json_out: bool) -> int:
    """`reconstruct` over several inputs into root/<name>/ (this shard's share); returns the
    batch's exit code (see run_batch)."""
    from .batch import output_names, summary_paths

    names = output_names(inputs)
    if shard_kn is not None:
        k, n = shard_kn
        keep = [i for i in range(len(inputs)) if i % n == k - 1]
        inputs, names = [inputs[i] for i in keep], [names[i] for i in keep]
    if not (force or resume):
        # a finished batch's summary is an output too: a plain re-run must not rewrite it
        check_free(summary_paths(root, shard_kn), force=False)
    renderer.status(f"loading prior {job_kwargs['prior']} ...")
    job = Job(**job_kwargs)
    renderer.status(None)
    renderer.overall(len(inputs))
    code = run_batch(job, inputs, names, root, force=force, resume=resume, shard=shard_kn, renderer=renderer, quiet=quiet,
                     batch_images=batch_images, jobs=jobs, threads=threads)
    if json_out:  # the batch's summary (strict JSON, as written to summary.json)
        typer.echo(summary_paths(root, shard_kn)[0].read_text().strip())
    return code


@handle_errors
def reconstruct(
    ctx: typer.Context,
    images: Optional[List[str]] = typer.Argument(None, help="Image files, folders or glob patterns (omit with --measurements)."),
    list_file: Optional[Path] = typer.Option(None, "--list", help="A file with one image path per line ('#' comments).", rich_help_panel=PANEL_INPUT),
    measurements: Optional[Path] = typer.Option(None, help="Reconstruct from a file written by `recon measure`.", rich_help_panel=PANEL_INPUT),
    truth: Optional[Path] = typer.Option(None, help="Ground-truth image for metrics when using --measurements.", rich_help_panel=PANEL_INPUT),
    observed: bool = typer.Option(False, "--observed", help="The IMAGE(s) are observations y, not clean images: a low-resolution (--op superres), blurred (blur), noisy (denoise) or damaged (inpaint, with --mask FILE) photo. No ground truth: metrics are null, the residual is reported.", rich_help_panel=PANEL_INPUT),
    fit: FitOpt = "crop-resize",
    op: OpOpt = "cs-gaussian",
    ratio: RatioOpt = 0.1,
    frac: FracOpt = 0.1,
    mask: MaskOpt = "random",
    factor: FactorOpt = 4,
    kernel_size: KernelOpt = 9,
    blur_boundary: BoundaryOpt = "circular",
    noise_std: NoiseStdOpt = 0.0,
    noise_convention: NoiseConvOpt = "per-entry",
    prior: str = typer.Option("dcgan-faces-64", help="Zoo name (see `recon priors`) or path to a checkpoint.", rich_help_panel=PANEL_PRIOR),
    arch: Optional[str] = typer.Option(None, help=f"Architecture of a --prior PATH when its format does not say: {', '.join(ARCH_NAMES)}.", rich_help_panel=PANEL_PRIOR),
    prior_format: Optional[str] = typer.Option(None, help=f"Checkpoint format of a --prior PATH: {', '.join(FORMAT_NAMES)}.", show_default="detected", rich_help_panel=PANEL_PRIOR),
    class_idx: Optional[int] = typer.Option(None, "--class", help="BigGAN class index (ImageNet class for the public models).", show_default="random per restart", rich_help_panel=PANEL_PRIOR),
    truncation: Optional[float] = typer.Option(None, help="Truncation of BigGAN/StyleGAN2 priors loaded from a path.", show_default="checkpoint's", rich_help_panel=PANEL_PRIOR),
    prior_config: Optional[str] = typer.Option(None, help="JSON object of adapter config overrides for a --prior PATH, e.g. '{\"native_range\": [0, 1]}' (AntixK VAEs) or '{\"fused_scale\": true}' (genforce PGGAN).", rich_help_panel=PANEL_PRIOR),
    method: str = typer.Option("surgery", help=f"Inversion method: {', '.join(METHOD_NAMES)}.", rich_help_panel=PANEL_METHOD),
    preset: str = typer.Option("fast", help=f"fast (the fast schedules of {', '.join(FAST_METHOD_NAMES[:-1])} and {FAST_METHOD_NAMES[-1]}: line-search L-BFGS with restart pruning and stopping rules for surgery, mgan and iagan, shorter Adam rounds for ilo, bfloat16 first where native for surgery, ilo and csgm) or paper (the papers' schedules exactly); a method without a fast schedule that keeps its quality runs its paper one. Defaults below: paper value, (fast) where it differs, * = the paper's per architecture.", rich_help_panel=PANEL_METHOD),
    backproject: bool = typer.Option(False, help="Post-process the estimate with back-projection x + A^+(y - A x) (IAGAN eq. 10).", rich_help_panel=PANEL_METHOD),
    seed: int = typer.Option(0, help="Seed of everything random (operator, noise, restarts).", rich_help_panel=PANEL_RUN),
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 0,
    max_memory: float = typer.Option(0.0, help="Memory budget in GB for operators (0 = a quarter of the RAM); larger dense operators are refused.", rich_help_panel=PANEL_RUN),
    batch_images: int = typer.Option(0, help="Batch, every method but pinv and lasso-dct: solve K images at a time as one batch (same results up to float rounding; faster on a CPU, see README 'Speed'). 0 = auto: batches of 8 for those methods without --jobs, else 1.", show_default="0 (auto)", rich_help_panel=PANEL_RUN),
    jobs: int = typer.Option(1, help="Batch: solve N images at a time in N worker processes (each with --threads, or the CPU cores shared out, torch threads). On a CPU, --jobs 2 with 1 thread each beats one process with 2 threads for the 64 px priors (see README 'Speed').", rich_help_panel=PANEL_RUN),
    resume: bool = typer.Option(False, help="Batch: skip images whose outputs are complete and made with the same settings; redo the others.", rich_help_panel=PANEL_RUN),
    shard: Optional[str] = typer.Option(None, help="Batch: process only share K of N (K/N, 1-based, deterministic).", rich_help_panel=PANEL_RUN),
    out: Optional[Path] = typer.Option(None, help="Output folder (a batch gets one subfolder per image).", show_default="recon_out/<name>, or recon_out for a batch", rich_help_panel=PANEL_OUTPUT),
    force: bool = typer.Option(False, help="Overwrite existing output files.", rich_help_panel=PANEL_OUTPUT),
    json_out: bool = typer.Option(False, "--json", help="Print metrics.json (a batch: summary.json) to stdout.", rich_help_panel=PANEL_OUTPUT),
    quiet: QuietOpt = False,
    log_json: LogJsonOpt = False,
    debug: DebugOpt = False,
    method_options: Optional[dict] = None,
):
    """Reconstruct images from measurements with a generative prior.

    Measures each IMAGE (or loads --measurements) and reconstructs it.
    Writes x_hat.png, x_hat.npy, compare.png, metrics.json (and
    measurements.npz when measured here) into --out.

    Several images, a folder, a glob or --list make a batch: one
    subfolder per image plus summary.json and summary.csv. Exit code 0
    if all succeeded, 1 if any failed, 130 if interrupted.
    \f
    Longer than 80 lines only by its option list (one Typer parameter per option); the work is in
    _check_run, _reconstruct_batch / run_batch and recon_core.pipeline.Pipeline."""
    method_options = method_options or {}
    args = {**{k: (str(v) if isinstance(v, Path) else v) for k, v in locals().items() if k not in ("ctx", "method_options")},
            **method_options}
    from recon_core.errors import BadInput

    from .batch import expand_inputs, parse_shard

    dev = resolve_device(device)
    set_threads(threads)
    shard_kn = parse_shard(shard)
    inputs, is_batch = expand_inputs(list(images or []), list_file)
    batch_images = _check_run(ctx, inputs=inputs, is_batch=is_batch, measurements=measurements, truth=truth, observed=observed,
                              op=op, mask=mask, method=method, preset=preset, noise_convention=noise_convention,
                              resume=resume, shard_kn=shard_kn, batch_images=batch_images, jobs=jobs)
    budget = None if max_memory == 0 else max_memory
    if budget is not None and not (0 < budget < 1e9):  # 1e9 GB: beyond it the byte count is no integer
        raise BadInput(f"--max-memory must be a number of GB > 0 and < 1e9 (or 0 for the default), got {max_memory}")
    job_kwargs = dict(
        prior=prior, method=method, config=method_options, op=op,
        op_params=operator_params(op, ratio, frac, mask, factor, kernel_size, blur_boundary), noise_std=noise_std,
        noise_convention=noise_convention, fit=fit, seed=seed, device=dev, args=args,
        max_memory=None if budget is None else int(budget * 1e9),
        prior_options=prior_options(arch, prior_format, class_idx, truncation, prior_config), backproject=backproject,
        preset=preset, observed=observed,
    )
    with EventRenderer(quiet=quiet, log_json=log_json) as renderer:
        if is_batch:
            code = _reconstruct_batch(job_kwargs, inputs, out or Path("recon_out"), renderer, shard_kn=shard_kn, force=force,
                                      resume=resume, quiet=quiet, batch_images=batch_images, jobs=jobs, threads=threads,
                                      json_out=json_out)
            if code:
                raise typer.Exit(code)
            return
        single = inputs[0] if inputs else None
        target = out or Path("recon_out") / (single or measurements).stem
        check_free([target / f for f in OUTPUT_FILES] + ([target / "measurements.npz"] if single else []), force)
        renderer.status(f"loading prior {prior} ...")
        job = Job(**job_kwargs)
        renderer.status(f"measuring {single or measurements} ...")
        renderer.context = {"images": [str(single or measurements)]}
        record = job.run(single, target, measurements=measurements, truth=truth, on_event=renderer, force=True)  # checked above
        renderer.status(None)
    if json_out:
        from recon_core.io import dumps as strict_dumps

        typer.echo(strict_dumps(record))
    if log_json:  # the final event: the outcome, as the batch's per-image events give it
        say("result", f"ok: {single or measurements}", input=str(single or measurements), out=str(target), status="ok",
            metrics=record["metrics"], solve=record["solve"], wall_time=record["wall_time"])
        return
    print_summary(record["metrics"], {k: str(target / v) for k, v in record["outputs"].items()}, quiet=quiet, record=record)
