"""Pieces shared by the subcommands: error handling, device choice, operator options."""

from __future__ import annotations

import functools
import os
import traceback
from pathlib import Path


from typing import Optional

import typer
from typing_extensions import Annotated

from recon_core.errors import BadInput, ReconError, UnknownName
from recon_core.io import check_free  # noqa: F401 - re-exported for the subcommands
from recon_core.pipeline import NOISE_SEED_OFFSET, SOLVER_SEED_OFFSET  # noqa: F401 - the seed policy, re-exported

from .options import PANEL_INPUT, PANEL_OPERATOR, PANEL_OUTPUT, PANEL_RUN  # noqa: E402 - torch-free

DEBUG_ENV = "RECON_DEBUG"
# The registries' names, written out so that `--help` and `recon priors` import no torch;
# tests/test_cli.py::test_cli_name_lists_match_the_registries checks each against its registry.
#: recon_core.operators.list_operators() (with the alias denoise)
OPS = ("identity", "denoise", "cs-gaussian", "cs-circulant", "cs-fourier", "inpaint", "superres", "blur")
#: recon_core.sweep.RATIO_PARAM: the operators `recon cut-sweep` varies a ratio of
SWEEP_OPS = ("cs-gaussian", "cs-circulant", "cs-fourier", "inpaint")
#: recon_core.operators.noise.CONVENTIONS
NOISE_CONVENTIONS = ("per-entry", "cs-norm")
#: recon_core.solvers.METHODS
METHOD_NAMES = ("csgm", "surgery", "ilo", "mgan", "iagan", "deep-decoder", "hybrid", "lasso-dct", "pinv")
#: the methods with a fast preset (recon_core.solvers.FAST_METHODS), named in --preset's help
FAST_METHOD_NAMES = ("surgery", "mgan", "iagan", "ilo", "csgm")
#: recon_core.generators.registry.names()
ARCH_NAMES = ("dcgan", "began", "vae", "stylegan2", "pggan", "biggan")
#: recon_core.generators.checkpoints.FORMATS
FORMAT_NAMES = ("recon", "netG", "rosinality", "hf-biggan", "pggan", "vae-antixk")


#: set by a command given --log-json: every stderr line is then a JSON object (see ``say``)
LOG_JSON = {"on": False}


def say(kind: str, message: str, **fields) -> None:
    """One line on stderr: ``kind: message`` for people, or with --log-json the JSON object
    {"event": kind, "message": message, **fields} (kinds: error, warning, note, image, done,
    interrupted, result)."""
    if LOG_JSON["on"]:
        from recon_core.io import dumps as strict_dumps

        typer.echo(strict_dumps({"event": kind, "message": message, **fields}), err=True)
    else:
        from .render import ACTIVE

        text = message if kind in ("image", "done") else f"{kind}: {message}"
        if ACTIVE["renderer"] is None or not ACTIVE["renderer"].print(text):
            typer.echo(text, err=True)


def fail(message: str, code: int) -> "typer.Exit":
    """Print ``error: message`` (one line) on stderr and return the Exit to raise."""
    say("error", message, exit_code=code)
    return typer.Exit(code)


def handle_errors(fn):
    """Turn ReconError into a one-line message and its exit code (2 bad input, 1 runtime), any
    other exception into a one-line 'internal error' (exit 1), Ctrl-C into exit 130. With
    --debug (or RECON_DEBUG=1) the traceback is printed too."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = bool(kwargs.get("debug")) or os.environ.get(DEBUG_ENV) == "1"
        LOG_JSON["on"] = bool(kwargs.get("log_json"))  # per command (tests run many in one process)
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except ReconError as e:
            if debug:
                traceback.print_exc()
            raise fail(str(e), e.exit_code) from None
        except KeyboardInterrupt:
            if debug:
                traceback.print_exc()
            raise fail("interrupted", 130) from None
        except Exception as e:  # a bug or an environment failure: still one line by default
            if debug:
                traceback.print_exc()
            msg = " ".join(f"{type(e).__name__}: {e}".split())
            raise fail(f"internal error: {msg} (rerun with --debug for the traceback)", 1) from None

    return wrapper


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when available else 'cpu'; 'cuda' without a GPU is a BadInput."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda requested but no CUDA device is available; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise UnknownName("--device", device, ("auto", "cpu", "cuda"))
    return device


def check_noise_convention(noise_convention: str) -> None:
    """BadInput unless --noise-convention is one the CLI offers (checked before any heavy work)."""
    if noise_convention not in NOISE_CONVENTIONS:
        from recon_core.errors import UnknownName

        raise UnknownName("--noise-convention", noise_convention, NOISE_CONVENTIONS)


def set_threads(threads: int) -> None:
    """Set torch's intra-op CPU threads (0 keeps torch's default)."""
    limit = 4 * (os.cpu_count() or 1)
    if not 0 <= threads <= limit:
        # an absurd count would make every later torch op spawn (and spin) that many threads
        raise BadInput(f"--threads must be between 0 and {limit} (4 x the CPU cores), got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)


def prior_options(arch, prior_format, class_idx, truncation, prior_config: Optional[str] = None) -> dict:
    """Keyword arguments for ``resolve_prior`` from the --arch/--prior-format/--class/--truncation
    options (only those given) and --prior-config (a JSON object of adapter config overrides)."""
    import json

    extra = {}
    if prior_config:
        try:
            extra = json.loads(prior_config)
        except ValueError as e:
            raise BadInput(f"--prior-config must be a JSON object: {e}") from None
        if not isinstance(extra, dict):
            raise BadInput("--prior-config must be a JSON object, e.g. '{\"native_range\": [0, 1]}'")
    opts = {"arch": arch, "fmt": prior_format, "class_idx": class_idx, "truncation": truncation}
    return {**extra, **{k: v for k, v in opts.items() if v is not None}}


def operator_params(op: str, ratio: float, frac: float, mask: str, factor: int, kernel_size: int,
                    boundary: str = "circular") -> dict:
    """The parameters of operator family ``op`` taken from the CLI options."""
    if op.startswith("cs-"):
        return {"ratio": ratio}
    if op == "inpaint":
        if mask not in ("random", "box"):  # a mask file decides the kept pixels itself
            return {"mask": str(Path(mask).expanduser())}
        return {"frac": frac, "mask": mask}
    if op == "superres":
        return {"factor": factor}
    if op == "blur":
        return {"kernel_size": kernel_size, "boundary": boundary}
    return {}


#: the operator options of each family (the others must not be given with it)
OPERATOR_OPTIONS = {"cs-gaussian": ("ratio",), "cs-circulant": ("ratio",), "cs-fourier": ("ratio",),
                    "inpaint": ("frac", "mask"), "superres": ("factor",), "blur": ("kernel_size", "blur_boundary"),
                    "identity": (), "denoise": ()}


def check_operator_options(ctx, op: str) -> None:
    """BadInput when an operator option that ``op`` does not take was given on the command line
    (e.g. ``--op cs-gaussian --frac 0.3``), instead of silently ignoring it; ``ctx`` is the
    command's typer.Context."""
    takes = OPERATOR_OPTIONS.get(op, ())
    for name in ("ratio", "frac", "mask", "factor", "kernel_size", "blur_boundary"):
        source = ctx.get_parameter_source(name)  # click's ParameterSource (typer may vendor click)
        if name not in takes and getattr(source, "name", "") == "COMMANDLINE":
            wants = ", ".join("--" + t.replace("_", "-") for t in takes) or "none"
            raise BadInput(f"--{name.replace('_', '-')} does not apply to --op {op} (its options: {wants})")


# ---- options shared by several subcommands (one definition, one help text) ------------------
OpOpt = Annotated[str, typer.Option("--op", help=f"Forward operator: {', '.join(OPS)}.", rich_help_panel=PANEL_OPERATOR)]
RatioOpt = Annotated[float, typer.Option(help="m/n for cs-* operators.", rich_help_panel=PANEL_OPERATOR)]
FracOpt = Annotated[float, typer.Option(help="Fraction of pixels kept (inpaint).", rich_help_panel=PANEL_OPERATOR)]
MaskOpt = Annotated[str, typer.Option(help="Inpainting mask: random|box|PATH to a PNG (white = kept).", rich_help_panel=PANEL_OPERATOR)]
FactorOpt = Annotated[int, typer.Option(help="Downsampling factor (superres, 2-16).", rich_help_panel=PANEL_OPERATOR)]
KernelOpt = Annotated[int, typer.Option(help="Blur kernel size (blur, odd).", rich_help_panel=PANEL_OPERATOR)]
BoundaryOpt = Annotated[str, typer.Option(help="Blur boundary: circular|reflect.", rich_help_panel=PANEL_OPERATOR)]
NoiseStdOpt = Annotated[float, typer.Option(help="Noise level (see --noise-convention).", rich_help_panel=PANEL_OPERATOR)]
NoiseConvOpt = Annotated[str, typer.Option(help="per-entry: std of each entry; cs-norm: sqrt(E||eta||^2) at 64 px, scaled.", rich_help_panel=PANEL_OPERATOR)]
FitOpt = Annotated[str, typer.Option(help="Fit images to the prior: crop-resize|crop|resize|pad.", rich_help_panel=PANEL_INPUT)]
DeviceOpt = Annotated[str, typer.Option(help="auto|cpu|cuda.", rich_help_panel=PANEL_RUN)]
ThreadsOpt = Annotated[int, typer.Option(help="CPU threads for torch; 0 = torch's default (all cores). Use 1 when running several jobs side by side.", rich_help_panel=PANEL_RUN)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.", rich_help_panel=PANEL_OUTPUT)]
LogJsonOpt = Annotated[bool, typer.Option(help="Progress as JSON lines on stderr.", rich_help_panel=PANEL_OUTPUT)]
DebugOpt = Annotated[bool, typer.Option(help="Print tracebacks.", rich_help_panel=PANEL_OUTPUT)]
