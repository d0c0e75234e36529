"""One run of recon, shared by the CLI, the benchmarks and Python users (DESIGN.md).

- the seed policy and ``simulate``: one image measured as ``recon reconstruct --seed S`` measures it;
- ``solve_problems`` (one problem or a batch, with the solver seed of the policy) and ``score``;
- ``Pipeline``: everything ``recon reconstruct`` does for one image (load and fit it, or read
  measurements, or take an observed photo; solve; score against the truth and the pinv baseline;
  write x_hat.png / x_hat.npy / compare.png / metrics.json, all or nothing), so that::

      from recon_core.pipeline import Pipeline
      record = Pipeline(method="surgery", op="cs-gaussian", op_params={"ratio": 0.1}).run("img.png", out="run1")

  is the exact CLI run (``record`` is its metrics.json);
- the result identity, a hash of everything that determines a result (``--resume``);
- ``Grid``: one resumable keyed document of results, rewritten atomically after every cell
  (cut-sweep and the benchmarks).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Optional

from .errors import is_int  # light: no torch

#: the seed policy: from one seed S, the operator draws from S, the noise from S + NOISE_SEED_OFFSET
#: and the solver (restart initialisations, SNA noise) from S + SOLVER_SEED_OFFSET, so the three
#: streams never coincide and each can be reproduced alone
NOISE_SEED_OFFSET = 1_000_003
SOLVER_SEED_OFFSET = 2_000_006


def simulate(x, op: str, params: dict, seed: int, noise_std: float = 0.0, noise_convention: str = "per-entry",
             device="cpu", max_memory=None):
    """Measure image ``x`` (1, C, H, W) in [0, 1]: the operator ``op`` with ``params`` (e.g.
    {"ratio": 0.1}) seeded by ``seed``, plus noise drawn from seed + NOISE_SEED_OFFSET.
    max_memory: operator memory budget in bytes (None = a quarter of the RAM). Returns
    (Problem, NoiseSpec); the problem's noise_std is the per-entry std the noise implies."""
    from .operators import NoiseSpec, add_noise, build
    from .solvers.common import Problem

    A = build(op, tuple(x.shape[1:]), seed=seed, device=device, max_bytes=max_memory, **params)
    noise = NoiseSpec(noise_convention, noise_std, seed=seed + NOISE_SEED_OFFSET)
    return Problem(A, add_noise(A.A(x.to(device)), noise, A), noise.std(A)), noise


#: bump when the meaning of the identity fields changes (old outputs are then solved again)
IDENTITY_VERSION = 1


def file_digest(path, chunk: int = 1 << 20) -> Optional[str]:
    """sha256 hex digest of a file's bytes; None when ``path`` is not a readable file."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(chunk), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def result_identity(fields: dict) -> dict:
    """{"version", "hash", "fields"}: ``fields`` (JSON-able: the resolved method config, the
    operator and noise settings, the prior's identity and options, the fit, the seed, ...) and a
    sha256 of their canonical JSON, so two runs with one hash compute the same result from the
    same input. A file named by a field should be given by content (see ``file_digest``)."""
    canon = json.dumps({"version": IDENTITY_VERSION, **fields}, sort_keys=True, separators=(",", ":"), default=str)
    return {"version": IDENTITY_VERSION, "hash": hashlib.sha256(canon.encode()).hexdigest(), "fields": fields}


def identity_diff(old: Any, new: dict) -> list:
    """The names of the top-level fields that differ between a stored identity ``old`` (a dict
    from metrics.json, or anything else for a folder made before identities existed) and
    ``new``; [] when the hashes agree."""
    if not isinstance(old, dict) or old.get("version") != new["version"]:
        return ["settings recorded by another version of recon"]
    if old.get("hash") == new["hash"]:
        return []
    # compare as stored (JSON turns tuples into lists)
    of, nf = old.get("fields") or {}, json.loads(json.dumps(new["fields"], default=str))
    return sorted(k for k in set(of) | set(nf) if of.get(k) != nf.get(k)) or ["settings"]


# ---- one run: solve, score, record ---------------------------------------------------------------

#: the metrics.json schema version (bump when a field changes meaning)
METRICS_SCHEMA = 1
#: an input image (clean or observed) smaller than this on a side carries too little to reconstruct
MIN_IMAGE_SIDE = 8
#: operators whose measurements are an image a user can hand in (observed=True / --observed)
OBSERVABLE_OPS = ("superres", "blur", "denoise", "inpaint")
#: what a run writes into its output folder (plus measurements.npz when it measured the image)
OUTPUT_FILES = ("x_hat.png", "x_hat.npy", "compare.png", "metrics.json")


def _coerce(name: str, value, default):
    """A config value given as text (the CLI, a JSON file) converted to the type of the field's
    default (tuples from 'a,b,c'); typed values pass through."""
    from .errors import BadInput

    if isinstance(default, tuple) and all(isinstance(d, str) for d in default) and isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]  # e.g. ILO's per-round optimisers
        return names[0] if len(names) == 1 else tuple(names)
    if isinstance(default, tuple):
        if isinstance(value, str):
            try:
                items = [v.strip() for v in value.split(",") if v.strip()]
                conv = int if all(isinstance(d, int) for d in default) else float
                return tuple(conv(v) for v in items)
            except ValueError:
                raise BadInput(f"--{name.replace('_', '-')} must be a comma-separated list of numbers, got '{value}'") from None
        return tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if isinstance(value, str) and is_int(default):
        try:
            return int(value)
        except ValueError:
            raise BadInput(f"--{name.replace('_', '-')} must be an integer, got '{value}'") from None
    return value


def build_config(method: str, arch: str = "", overrides: Optional[dict] = None, cut_points=None, preset: str = "fast"):
    """(config, solve) of ``method``: ``preset`` on its paper defaults (per architecture where
    the paper gives them), then every option in ``overrides`` that is not None. An option the
    method does not have is a BadInput."""
    from dataclasses import fields, replace

    from .errors import BadInput
    from .solvers import get_method, make_config

    overrides = overrides or {}
    cfg = make_config(method, preset, arch, cut_points)
    solve = get_method(method)[1]
    names = {f.name for f in fields(cfg)}
    changes = {}
    for opt_field, steps_field in getattr(cfg, "SCHEDULES", ()):  # solvers.common.MethodConfig.SCHEDULES
        if opt_field not in names:  # an option the method lacks is refused below, by name
            continue
        if overrides.get(opt_field) not in (None, getattr(cfg, opt_field)) and overrides.get(steps_field) is None:
            # another optimiser than the preset's gets the paper's steps unless steps are given
            changes[steps_field] = getattr(make_config(method, "paper", arch, cut_points), steps_field)
    for k, v in overrides.items():
        if v is None:
            continue
        if k not in names:
            raise BadInput(f"--{k.replace('_', '-')} does not apply to --method {method}")
        changes[k] = _coerce(k, v, getattr(cfg, k))
    # replace(), not setattr: the config's own checks (MethodConfig.__post_init__) see the given
    # values here, before a prior loads, not in the middle of a solve
    return replace(cfg, **changes), solve


def solve_problems(method: str, problems: list, prior, config, seed, on_event=None, backproject: bool = False) -> list:
    """Solve ``problems`` with ``method`` and ``config``, each with the solver seed of the seed
    policy (seed + SOLVER_SEED_OFFSET, as a single run of it would have; ``seed``: one for all or
    one per problem): several problems as one batch (the methods with a batched solver), one alone. ``backproject`` post-processes
    each estimate (IAGAN eq. 10). Returns one Result, or the SolverDiverged of that problem,
    per problem."""
    from .errors import SolverDiverged
    from .events import null_sink
    from .solvers import BATCH_METHODS, get_method
    from .solvers.common import solve_isolated

    on_event = on_event or null_sink
    seeds = [s + SOLVER_SEED_OFFSET for s in (seed if isinstance(seed, (list, tuple)) else [seed] * len(problems))]
    if len(problems) > 1:
        results = solve_isolated(BATCH_METHODS[method], problems, prior, config, on_event, seeds)
    else:
        try:
            results = [get_method(method)[1](problems[0], prior, config, on_event=on_event, seed=seeds[0])]
        except SolverDiverged as e:
            results = [e]
    if backproject:
        from .solvers.postprocess import backproject as bp

        results = [r if isinstance(r, Exception) or r.extra.get("backprojected") else bp(r, p) for r, p in zip(results, problems)]
    return results


def score(x, x_hat, problem, no_truth_reason: str = "no ground truth") -> dict:
    """The metrics of estimate ``x_hat`` (1, C, H, W) in [0, 1] against truth ``x`` (None: no
    truth, so PSNR/SSIM/LPIPS/MSE are None with ``no_truth_reason``) and the measurement
    residual ||A x_hat - y|| / ||y||."""
    import torch

    from .metrics import compute_metrics

    if x is not None:
        return compute_metrics(x, x_hat, problem.y, problem.A)
    with torch.no_grad():
        res = float((problem.A.A(x_hat) - problem.y).norm() / problem.y.norm().clamp_min(1e-12))
    return {"psnr": None, "ssim": None, "lpips": None, "mse": None, "residual": res, **{
        f"{k}_reason": no_truth_reason for k in ("psnr", "ssim", "lpips", "mse")}}


def baseline_record(metrics: dict, base: dict) -> dict:
    """metrics.json "baseline": the pinv estimate's metrics and whether the estimate beats it."""
    from .io import finite_metrics

    out = {"method": "pinv", "metrics": finite_metrics(base)}
    if metrics.get("psnr") is not None and base.get("psnr") is not None:
        out["estimate_beats_it"] = {"psnr": bool(metrics["psnr"] > base["psnr"]),
                                    **({"lpips": bool(metrics["lpips"] < base["lpips"])}
                                       if metrics.get("lpips") is not None and base.get("lpips") is not None else {})}
    return out


def wall_time(result, other_seconds: float) -> dict:
    """metrics.json "wall_time": solve = this image's seconds of solving (its share of a batch:
    the batch's wall time / images, with "batch" and "batch_solve" recorded), total = solve +
    ``other_seconds`` (loading, measuring, writing)."""
    batch = result.extra.get("batch")
    solve = result.wall_time / batch if batch else result.wall_time
    out = {"solve": solve, "total": solve + other_seconds}
    if batch:
        out.update(batch=batch, batch_solve=result.wall_time)
    return out


def _check_side(image, x) -> tuple:
    """(H, W) of the loaded ``image`` (1, C, H, W); BadInput when a side is under MIN_IMAGE_SIDE."""
    from .errors import BadInput

    h, w = x.shape[-2:]
    if min(h, w) < MIN_IMAGE_SIDE:
        raise BadInput(f"{image} is {w}x{h}: too small to reconstruct from (at least {MIN_IMAGE_SIDE} px a side)")
    return h, w


def _log_note(kind: str, message: str, **fields) -> None:
    """The default note sink of a Pipeline: Python's logging (warnings as warnings)."""
    import logging

    logging.getLogger("recon").log(logging.WARNING if kind == "warning" else logging.INFO, message)


@dataclass
class Task:
    """One image (or measurements file) of a run, measured and ready to solve: ``problem``, the
    truth ``x`` (None without one), the noise spec, what metrics.json says of the input, and
    ``seconds`` taken to load and measure it."""

    image: Any
    measurements: Any
    x: Any
    noise: Any
    image_info: Optional[dict]
    problem: Any
    seconds: float


class Pipeline:
    """``recon reconstruct``'s run for one setting, image after image (the prior is loaded once).

    prior: zoo name or checkpoint path (prior_options: arch, format, class_idx, truncation,
    config); method and preset (fast|paper) with ``config``: overrides of the method's config
    fields (None = the preset's value); op and op_params (e.g. {"ratio": 0.1}); noise_std and
    noise_convention (per-entry|cs-norm); fit (crop-resize|crop|resize|pad); seed (the seed
    policy); device ("cpu"/"cuda"); max_memory (operator budget in bytes); backproject
    (post-process the estimate); observed (the image *is* y). ``args`` is recorded in
    metrics.json (the CLI's options; default: these settings). ``on_note(kind, message,
    **fields)`` receives warnings and notes (default: Python logging)."""

    def __init__(self, *, prior: str = "dcgan-faces-64", method: str = "surgery", preset: str = "fast",
                 config: Optional[dict] = None, op: str = "cs-gaussian", op_params: Optional[dict] = None,
                 noise_std: float = 0.0, noise_convention: str = "per-entry", fit: str = "crop-resize", seed: int = 0,
                 device: str = "cpu", max_memory: Optional[int] = None, prior_options: Optional[dict] = None,
                 backproject: bool = False, observed: bool = False, args: Optional[dict] = None, on_note=None):
        import torch

        from .errors import UnknownName
        from .generators.zoo import prior_image_shape, resolve_prior
        from .operators.noise import CONVENTIONS as NOISE_CONVENTIONS
        from .solvers import effective_preset, needs_prior

        settings = {k: v for k, v in locals().items() if k not in ("self", "torch", "UnknownName", "prior_image_shape",
                                                                     "resolve_prior", "NOISE_CONVENTIONS", "effective_preset",
                                                                     "needs_prior", "on_note")}
        if noise_convention not in NOISE_CONVENTIONS:
            raise UnknownName("noise convention", noise_convention, NOISE_CONVENTIONS)
        torch.manual_seed(seed)
        self.prior_name, self.method, self.op, self.op_params = prior, method, op, dict(op_params or {})
        self.noise_std, self.noise_convention, self.fit, self.seed, self.device = noise_std, noise_convention, fit, seed, device
        self.max_memory, self.backproject, self.observed = max_memory, backproject, observed
        self.args = args if args is not None else settings
        self.on_note = on_note or _log_note
        prior_options = prior_options or {}
        if needs_prior(method):
            self.prior = resolve_prior(prior, device=device, **prior_options)
            meta = self.prior.meta
            self.image_shape = (meta.channels, meta.resolution, meta.resolution)
        else:  # pinv, lasso-dct, deep-decoder: the prior only names the image size (zoo: no weights read)
            self.prior = None
            self.image_shape = tuple(prior_image_shape(prior, **prior_options))
        self.preset = effective_preset(method, preset)
        arch, cuts = (self.prior.meta.architecture, self.prior.cut_points) if self.prior is not None else ("", None)
        self.cfg, self.solve = build_config(method, arch, config, cuts, preset)
        if hasattr(self.cfg, "cut"):
            self.prior.check_cut(self.cfg.cut)
        self.identity = self._identity(prior_options)

    def _identity(self, prior_options: dict) -> dict:
        """What determines a result besides its input image (see ``result_identity``): the
        resolved method config, operator, noise, prior (files by content) and its options, fit,
        seed, observed and backproject."""
        from pathlib import Path

        from .solvers.common import config_dict

        op_params = dict(self.op_params)
        if isinstance(op_params.get("mask"), str) and op_params["mask"] not in ("random", "box"):
            op_params["mask_sha256"] = file_digest(op_params["mask"])
        prior = {"name": self.prior_name, "options": prior_options, "image_shape": list(self.image_shape),
                 **({"meta": self.prior.meta.to_dict()} if self.prior is not None else {})}
        for f in (Path(self.prior_name), Path(self.prior_name) / "checkpoint.pt", Path(self.prior_name) / "pytorch_model.bin"):
            if f.is_file():  # a checkpoint file, a train-rtil run directory, an HF BigGAN directory
                prior["sha256"] = file_digest(f)
                break
        return result_identity({
            "method": {"name": self.method, "preset": self.preset, "config": config_dict(self.cfg)},
            "operator": {"op": self.op, "params": op_params}, "noise": {"convention": self.noise_convention, "std": self.noise_std},
            "prior": prior, "fit": self.fit, "seed": self.seed, "observed": self.observed, "backproject": self.backproject,
        })

    def run(self, image=None, out=None, *, measurements=None, truth=None, on_event=None, force: bool = False) -> dict:
        """Reconstruct ``image`` (a path; or ``measurements``, a file written by ``recon
        measure``, with an optional ``truth``) and return its metrics.json record; with ``out``
        (a folder) write the outputs there, all or nothing (existing outputs are refused unless
        ``force``)."""
        from pathlib import Path

        from .io import check_free

        image, measurements = (Path(image) if image is not None else None), (Path(measurements) if measurements else None)
        if out is not None:
            check_free([Path(out) / f for f in OUTPUT_FILES], force)
        task = self.prepare(image=image, measurements=measurements, truth=Path(truth) if truth else None)
        result = self.solve_all([task], on_event)[0]
        if isinstance(result, Exception):
            raise result
        if out is None:
            return self._write(None, task, result)
        return self.write(Path(out), task, result)

    def prepare(self, *, image=None, measurements=None, truth=None, x=None, name: Optional[str] = None) -> Task:
        """Load ``image`` (fitted to the prior) and measure it; or measure the tensor ``x``
        (1, C, H, W) in [0, 1] at the prior's size (``name`` labels it); or load ``measurements``
        (and the optional ``truth``): the problem to solve and what the outputs need."""
        import time

        from .errors import BadInput
        from .images import fit_image, load_image
        from .measurements import load_measurements
        from .solvers import Problem

        t0 = time.perf_counter()
        c, r = self.image_shape[:2]
        if x is not None:
            if tuple(x.shape[1:]) != tuple(self.image_shape):
                raise BadInput(f"x is of shape {tuple(x.shape[1:])}, the prior makes {tuple(self.image_shape)}")
            x = x.to(self.device)
            problem, noise = simulate(x, self.op, self.op_params, self.seed, self.noise_std, self.noise_convention,
                                      self.device, self.max_memory)
            return Task(image=None, measurements=None, x=x, noise=noise, problem=problem, seconds=time.perf_counter() - t0,
                        image_info={"name": name, "shape": list(x.shape[1:])})
        if image is not None and self.observed:
            A, y, noise, image_info = self._observe(image)
            x = None
        elif image is not None:
            raw = load_image(image, channels=c)
            image_info = {"path": str(image), "sha256": file_digest(image), "fit": self.fit, "input_shape": list(raw.shape[1:])}
            h, w = _check_side(image, raw)
            x = fit_image(raw, r, self.fit).to(self.device)
            image_info["shape"] = list(x.shape[1:])
            if min(h, w) < r and self.fit in ("crop-resize", "resize"):
                image_info["fit_note"] = f"{w}x{h} image enlarged {r / min(h, w):.2g}x to the prior's {r}x{r} ({self.fit})"
                self.on_note("warning", f"{image}: {image_info['fit_note']}", image=str(image))
            problem, noise = simulate(x, self.op, self.op_params, self.seed, self.noise_std, self.noise_convention,
                                      self.device, self.max_memory)
            A, y = problem.A, problem.y
        else:
            y, A, noise, meta = load_measurements(measurements, device=self.device, max_memory=self.max_memory)
            image_info = meta.get("image")
            if self.prior is not None and tuple(A.img_shape) != (c, r, r):
                raise BadInput(f"measurements are of {tuple(A.img_shape)} images but prior '{self.prior_name}' makes {(c, r, r)}")
            if truth is not None:  # fitted to the measured images' size (a prior-free method has no other)
                x = fit_image(load_image(truth, channels=A.img_shape[0]), A.img_shape[1], self.fit).to(self.device)
        return Task(image=image, measurements=measurements, x=x, noise=noise, image_info=image_info,
                    problem=Problem(A, y, noise.std(A)), seconds=time.perf_counter() - t0)

    def _observe(self, image) -> tuple:
        """``image`` is the measurement y itself (a low-resolution, blurred, noisy or damaged
        photo): build the operator at the prior's resolution and read y from the image, fitted
        to the measurement shape when its size differs (stated as a note and in metrics.json).
        The noise level given is declared, not added. Returns (A, y, noise, image_info)."""
        from .images import fit_image, load_image
        from .operators import NoiseSpec, build

        c, r = self.image_shape[:2]
        A = build(self.op, (c, r, r), seed=self.seed, device=self.device, max_bytes=self.max_memory, **self.op_params)
        obs = load_image(image, channels=c)
        shape = tuple(A.meas_shape) if self.op == "superres" else tuple(A.img_shape)
        h, w = _check_side(image, obs)
        info = {"path": str(image), "sha256": file_digest(image), "observed": True, "input_shape": [c, h, w],
                "shape": list(shape)}
        if (h, w) != shape[1:]:
            scale = shape[1] / h
            info["fit"] = self.fit
            info["fit_note"] = (f"observed {w}x{h} image fitted ({self.fit}) to the measurement size {shape[2]}x{shape[1]}"
                                + (f", enlarged {scale:.2g}x" if scale > 1 else ""))
            self.on_note("note", f"{image}: {info['fit_note']}", image=str(image))
            obs = fit_image(obs, shape[1:], self.fit)
        obs = obs.to(self.device)
        y = A.A(obs) if self.op == "inpaint" else obs  # inpainting's y is the mask's kept pixels
        noise = NoiseSpec(self.noise_convention, self.noise_std, seed=self.seed + NOISE_SEED_OFFSET)
        return A, y.reshape((1,) + tuple(A.meas_shape)), noise, info

    def solve_all(self, tasks: list, on_event=None) -> list:
        """Solve the tasks' problems (``solve_problems``: one batch when there are several).
        Returns one Result, or the SolverDiverged of that image, per task."""
        return solve_problems(self.method, [t.problem for t in tasks], self.prior, self.cfg, self.seed, on_event,
                              self.backproject)

    def write(self, out, task: Task, result) -> dict:
        """Write the outputs of one solved task into the folder ``out`` (all or nothing, see
        recon_core.io.staged) and return its metrics.json record."""
        from pathlib import Path

        from .io import staged

        return staged(Path(out), lambda stage: self._write(stage, task, result))

    def evaluate(self, task: Task, result) -> tuple:
        """(x_hat, x_base, metrics, base): the estimate clamped to [0, 1], the pinv baseline A^+ y
        every method should beat (zero-fill, bicubic, minimum norm; x_hat itself for pinv) and
        the scores of both (``score``; without a truth only the residual)."""
        import torch

        A, y = task.problem.A, task.problem.y
        x_hat = result.x_hat.clamp(0, 1)
        with torch.no_grad():
            x_base = x_hat if self.method == "pinv" else A.A_dagger(y).clamp(0, 1)
        reason = ("no ground truth (the input is an observed image)" if self.observed else
                  "no ground truth (reconstructing from --measurements without --truth)")
        metrics = score(task.x, x_hat, task.problem, reason)
        base = metrics if self.method == "pinv" else score(task.x, x_base, task.problem, reason)
        return x_hat, x_base, metrics, base

    def _write(self, out, task: Task, result) -> dict:
        """Write x_hat.png, x_hat.npy, compare.png (measurements.npz), metrics.json into ``out``;
        ``out`` None writes nothing and returns the record alone."""
        import time

        import numpy as np

        from .images import atomic_write_text, save_image
        from .io import dumps as strict_dumps
        from .measurements import save_measurements

        t0 = time.perf_counter()
        x_hat, x_base, metrics, base = self.evaluate(task, result)
        outputs = {}
        if out is not None:
            save_image(x_hat, out / "x_hat.png")
            # the estimate at full precision (x_hat.png is 8-bit): float32 (C, H, W) in [0, 1]
            np.save(out / "x_hat.npy", x_hat[0].detach().cpu().float().numpy())
            save_image(self._compare(task, x_hat, x_base, metrics, base), out / "compare.png")
            outputs = {"x_hat": "x_hat.png", "x_hat_npy": "x_hat.npy", "compare": "compare.png"}
            if task.image is not None:
                save_measurements(out / "measurements.npz", task.problem.y, task.problem.A, task.noise, image=task.image_info)
                outputs["measurements"] = "measurements.npz"
        record = self.record(task, result, metrics, base, outputs)
        record["wall_time"] = wall_time(result, task.seconds + time.perf_counter() - t0)
        if out is not None:
            atomic_write_text(out / "metrics.json", strict_dumps(record, indent=2) + "\n")
        return record

    def _compare(self, task: Task, x_hat, x_base, metrics: dict, base: dict):
        """compare.png: truth | measurements | pinv baseline | estimate, captioned with scores."""
        import torch

        from .images import caption_grid, make_grid

        A, r = task.problem.A, task.problem.A.img_shape[1]

        def scores(m):
            if m.get("psnr") is None:
                return f"residual {m['residual']:.3f}"
            return f"{m['psnr']:.2f} dB" + (f", LPIPS {m['lpips']:.3f}" if m.get("lpips") is not None else "")

        named = [(task.x, ["truth", ""]), (A.preview(task.problem.y), ["measurements", f"m/n {A.m / A.n:.3g}"]),
                 (x_base, ["pinv baseline", scores(base)]), (x_hat, [f"{self.method} estimate", scores(metrics)])]
        if self.method == "pinv":
            named.pop(2)
        named = [(p.cpu(), c) for p, c in named if p is not None]
        grid = make_grid([p for p, _ in named], nrow=len(named))
        if r < 256:  # small priors: enlarge (nearest) so the comparison is legible
            grid = torch.nn.functional.interpolate(grid, scale_factor=256 // r, mode="nearest")
        return caption_grid(grid, [c for _, c in named], len(named))

    def record(self, task: Task, result, metrics: dict, base: dict, outputs: dict) -> dict:
        """The metrics.json record of one solved task (its schema lives here; "wall_time" is
        added by the writer)."""
        import torch

        from . import __version__
        from .io import finite_metrics
        from .solvers.common import config_dict

        A = task.problem.A
        prior = ({"name": self.prior_name, **self.prior.meta.to_dict()} if self.prior is not None else
                 {"name": self.prior_name, "loaded": False, "image_shape": list(self.image_shape),
                  "reason": f"--method {self.method} uses no generator; the prior only sets the image size"})
        return {
            "schema_version": METRICS_SCHEMA, "recon_version": __version__, "torch_version": torch.__version__,
            "device": self.device, "seed": self.seed, "args": self.args, "identity": self.identity,
            "image": task.image_info, "prior": prior, "operator": A.spec(), "noise": task.noise.to_dict(A),
            "measurements": {"m": A.m, "n": A.n, "ratio": A.m / A.n,
                             "file": str(task.measurements) if task.measurements else "measurements.npz"},
            "method": {"name": self.method, "preset": self.preset, "config": config_dict(self.cfg)},
            "solve": {"evaluations": result.extra.get("evaluations"), "stop": result.extra.get("stop"),
                      **({"bf16_evaluations": result.extra["bf16_evaluations"]} if "bf16_evaluations" in result.extra else {})},
            "restarts": {"losses": result.losses, "best": result.best_restart, "diverged": result.diverged},
            "metrics": finite_metrics(metrics),
            "baseline": baseline_record(metrics, base),
            "extra": result.extra,
            "history": result.history,
            "outputs": {**outputs, "metrics": "metrics.json"} if outputs else {},
        }


# ---- a resumable keyed grid of results -----------------------------------------------------------

class Grid:
    """A JSON document of results keyed by cell (e.g. "image|ratio|cut"), rewritten atomically
    after every cell, so an interrupted grid loses at most the cell in progress and a rerun
    skips finished cells. ``settings`` (JSON-able) must equal a resumed document's unless
    ``force`` (which starts over); ``cells`` names the key holding the cells; ``extra`` holds
    any other top-level fields (kept from the stored document unless given)."""

    def __init__(self, path, settings: Optional[dict] = None, *, schema: int = 1, cells: str = "cells",
                 force: bool = False, check_settings: bool = True):
        from pathlib import Path

        from .errors import BadInput

        self.path, self.cells_key = Path(path), cells
        if self.path.exists() and not force:
            try:
                doc = json.loads(self.path.read_text())
            except (OSError, ValueError):
                raise BadInput(f"{self.path} exists but is not a readable results file; use --force to start over") from None
            if check_settings and settings is not None and doc.get("settings") != json.loads(json.dumps(settings)):
                raise BadInput(f"{self.path} was made with other settings; use --force to start over or another --out")
            doc.setdefault(cells, {})
        else:
            doc = {"schema_version": schema, **({"settings": settings} if settings is not None else {}), cells: {}}
        self.doc = doc

    @property
    def cells(self) -> dict:
        """key -> record of the finished cells."""
        return self.doc[self.cells_key]

    def __contains__(self, key: str) -> bool:
        return key in self.cells

    def put(self, key: str, record: dict) -> None:
        """Store one finished cell and rewrite the document atomically."""
        self.cells[key] = record
        self.save()

    def save(self) -> None:
        """Rewrite the document atomically (strict JSON)."""
        from .images import atomic_write_text
        from .io import dumps as strict_dumps

        atomic_write_text(self.path, strict_dumps(self.doc, indent=1) + "\n")
