"""The CLI end to end (Typer's CliRunner), with a tiny random-weight prior unless stated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import pytest
from typer.testing import CliRunner

from recon_cli.app import app
from recon_core.generators import registry
from recon_core.images import save_image
from recon_core.solvers import make_config

runner = CliRunner()
FAST = ["--steps", "2", "--restarts", "1", "--quiet"]


@pytest.fixture
def face(tmp_path, face64):
    return save_image(face64, tmp_path / "face.png")


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_reconstruct_writes_outputs(tmp_path, face, tiny_ckpt):
    out = tmp_path / "out"
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--out", out, *FAST, "--op", "inpaint", "--frac", "0.3")
    assert r.exit_code == 0, r.output
    assert {p.name for p in out.iterdir()} == {"x_hat.png", "x_hat.npy", "compare.png", "metrics.json", "measurements.npz"}
    m = json.loads((out / "metrics.json").read_text())
    assert m["schema_version"] == 1 and m["method"]["name"] == "surgery"
    assert m["method"]["config"]["steps"] == 2 and m["method"]["config"]["optimizer"] == "lbfgs-ls"
    assert m["method"]["preset"] == "fast" and m["solve"]["evaluations"] <= 2 and m["solve"]["stop"] == "budget"
    assert len(m["restarts"]["losses"]) == 1 and m["operator"]["kind"] == "inpaint"
    assert 0 < m["metrics"]["psnr"] < 60 and m["metrics"]["residual"] is not None
    assert m["seed"] == 0 and m["torch_version"] and m["device"] == "cpu"
    assert m["args"]["op"] == "inpaint" and m["image"]["shape"] == [3, 32, 32]
    # x_hat.npy: the estimate at full precision, the same image as x_hat.png up to 8-bit rounding
    from recon_core.images import load_image

    full = np.load(out / "x_hat.npy")
    assert full.dtype == np.float32 and full.shape == (3, 32, 32) and 0 <= full.min() and full.max() <= 1
    png = load_image(out / "x_hat.png", channels=3)[0].numpy()
    assert np.abs(full - png).max() <= 0.5 / 255 + 1e-6 and m["outputs"]["x_hat_npy"] == "x_hat.npy"
    # the pinv baseline's scores, and whether the estimate beats it, computed like the estimate's
    from recon_core.metrics import compute_metrics
    from recon_core.measurements import load_measurements

    y, A, _, _ = load_measurements(out / "measurements.npz")
    truth = load_image(face, channels=3)
    from recon_core.images import fit_image

    ref = compute_metrics(fit_image(truth, 32), A.A_dagger(y).clamp(0, 1), y, A)
    assert m["baseline"]["method"] == "pinv" and m["baseline"]["metrics"]["psnr"] == pytest.approx(ref["psnr"], abs=1e-3)
    assert m["baseline"]["estimate_beats_it"]["psnr"] == (m["metrics"]["psnr"] > ref["psnr"])
    # compare.png: truth | measurements | pinv | estimate, with a caption strip under the panels
    cmp = load_image(out / "compare.png", channels=3)
    assert cmp.shape[-1] > 4 * 256 and cmp.shape[-2] > 256 + 12
    # refuses to overwrite, then --force works
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--out", out, *FAST)
    assert r.exit_code == 2 and "refusing to overwrite" in r.stderr and "Traceback" not in r.output
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--out", out, *FAST, "--force", "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["method"]["name"] == "surgery"


def test_presets_recorded(tmp_path, face, tiny_ckpt):
    """--preset paper runs the paper schedule; another optimiser under the fast preset gets the
    paper's step count (lbfgs-ls counts evaluations, not steps); csgm's fast preset is its paper
    schedule with a bfloat16 start."""
    base = ["reconstruct", face, "--prior", tiny_ckpt, "--restarts", "1", "--quiet", "--json"]
    r = run(*base, "--out", tmp_path / "a", "--preset", "paper", "--steps", "1", "--op", "inpaint")
    m = json.loads(r.stdout)
    assert r.exit_code == 0 and m["method"]["preset"] == "paper" and m["method"]["config"]["optimizer"] == "lbfgs"
    assert m["solve"] == {"evaluations": m["solve"]["evaluations"], "stop": "steps"} and m["solve"]["evaluations"] > 1
    r = run(*base, "--out", tmp_path / "b", "--optimizer", "adam", "--op", "inpaint")
    m = json.loads(r.stdout)
    assert r.exit_code == 0 and m["method"]["config"]["steps"] == 25 and m["method"]["preset"] == "fast"
    r = run(*base, "--out", tmp_path / "c", "--method", "csgm", "--steps", "2")
    m = json.loads(r.stdout)
    assert r.exit_code == 0 and m["method"]["preset"] == "fast" and m["method"]["config"]["bf16_share"] == 0.9
    assert m["method"]["config"]["optimizer"] == "adam"
    r = run(*base, "--out", tmp_path / "d", "--preset", "quick")
    assert r.exit_code == 2 and "unknown preset 'quick'" in r.stderr


def test_ilo_fast_preset_runs_by_default_and_is_recorded(tmp_path, face, tiny_ckpt, monkeypatch):
    """ILO's fast preset is the default: shorter rounds, the first 90 % of each in bfloat16 where
    native (patched on here), recorded in metrics.json; --preset paper runs the paper's rounds."""
    from recon_core.solvers import ilo

    monkeypatch.setattr(ilo, "native_bf16", lambda device: True)
    base = ["reconstruct", face, "--prior", tiny_ckpt, "--method", "ilo", "--radii", "10,inf", "--restarts", "1", "--quiet", "--json"]
    r = run(*base, "--out", tmp_path / "f", "--steps", "3,3,3")
    m = json.loads(r.stdout)
    assert r.exit_code == 0 and m["method"]["preset"] == "fast" and m["method"]["config"]["bf16_share"] == 0.9
    assert m["solve"]["bf16_evaluations"] == 3 * 2 and m["solve"]["evaluations"] == 3 * 3 + 3
    assert make_config("ilo", "fast").steps == (25, 100, 100)
    r = run(*base, "--out", tmp_path / "p", "--preset", "paper", "--steps", "3,3,3")
    m = json.loads(r.stdout)
    assert r.exit_code == 0 and m["method"]["preset"] == "paper" and m["method"]["config"]["bf16_share"] == 0.0
    assert "bf16_evaluations" not in m["solve"]


def test_summary_states_the_solve(tmp_path, face, tiny_ckpt):
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--out", tmp_path / "o", "--steps", "4", "--restarts", "1", "--op", "inpaint")
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.stderr.splitlines() if ln.startswith("surgery (fast preset), solve "))
    assert " evaluations" in line and "stopped: " in line


@pytest.mark.parametrize("native", [True, False])
def test_bf16_evaluations_recorded_and_summarised(tmp_path, face, tiny_ckpt, monkeypatch, native):
    """The fast preset's bfloat16 share: metrics.json and the solve line say how many evaluations
    ran in bfloat16 (none where the device has no native bfloat16)."""
    from recon_core.solvers import common

    monkeypatch.setattr(common, "native_bf16", lambda device: native)
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--out", tmp_path / "o", "--steps", "10", "--restarts", "2", "--op", "inpaint")
    assert r.exit_code == 0, r.output
    solve = json.loads((tmp_path / "o" / "metrics.json").read_text())["solve"]
    line = next(ln for ln in r.stderr.splitlines() if ln.startswith("surgery (fast preset), solve "))
    if native:
        assert 6 <= solve["bf16_evaluations"] < solve["evaluations"] <= 10  # 60 % of 10, then float32
        assert f"{solve['evaluations']} evaluations ({solve['bf16_evaluations']} in bfloat16), stopped: " in line
    else:
        assert solve["bf16_evaluations"] == 0 and "bfloat16" not in line


def test_csgm_and_cut0(tmp_path, face, tiny_ckpt):
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--out", tmp_path / "a", "--method", "csgm", *FAST, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["method"]["config"]["optimizer"] == "adam"
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--out", tmp_path / "b", "--method", "surgery", "--cut", "0", *FAST, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["method"]["config"]["cut"] == 0


def test_measure_then_reconstruct(tmp_path, face, tiny_ckpt):
    meas = tmp_path / "m.npz"
    r = run("measure", face, "-o", meas, "--prior", tiny_ckpt, "--op", "superres", "--factor", "2", "--noise-std", "0.01")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert meas.exists() and Path(info["preview"]).exists() and info["operator"]["factor"] == 2
    r = run("measure", face, "-o", meas, "--prior", tiny_ckpt)
    assert r.exit_code == 2 and "refusing to overwrite" in r.stderr
    r = run("reconstruct", "--measurements", meas, "--prior", tiny_ckpt, "--out", tmp_path / "o", *FAST, "--json")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["metrics"]["psnr"] is None and "no ground truth" in m["metrics"]["psnr_reason"]
    assert m["operator"]["kind"] == "superres" and m["noise"]["value"] == 0.01
    assert not (tmp_path / "o" / "measurements.npz").exists()
    r = run("reconstruct", "--measurements", meas, "--truth", face, "--prior", tiny_ckpt, "--out", tmp_path / "t", *FAST, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["metrics"]["psnr"] > 0


def load_face(path):
    from recon_core.images import load_image

    return load_image(path, channels=3)


def test_log_json_progress(tmp_path, face, tiny_ckpt):
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--out", tmp_path / "o", "--steps", "3", "--restarts", "1", "--log-json",
            "--preset", "paper")
    assert r.exit_code == 0, r.output
    # stderr is pure JSON lines: progress events naming the image, then one final result event
    events = [_strict(line) for line in r.stderr.splitlines()]
    progress, final = events[:-1], events[-1]
    assert [e["step"] for e in progress] == [1, 2, 3] and all(e["event"] == "progress" for e in progress)
    assert all(e["images"] == [str(face)] for e in progress)
    assert final["event"] == "result" and final["status"] == "ok" and final["input"] == str(face)
    assert final["metrics"]["psnr"] > 0 and final["out"] == str(tmp_path / "o")
    # a batch: every event names its images; one event per image; a closing "done" event
    batch = tmp_path / "b"
    batch.mkdir()
    for name in ("a.png", "b.png"):
        save_image(load_face(face), batch / name)
    r = run("reconstruct", batch, "--prior", tiny_ckpt, "--out", tmp_path / "bo", "--steps", "3", "--log-json")
    events = [_strict(line) for line in r.stderr.splitlines()]
    assert r.exit_code == 0 and {e["event"] for e in events} == {"progress", "image", "done"}
    assert all(set(e["images"]) == {str(batch / "a.png"), str(batch / "b.png")} for e in events if e["event"] == "progress")
    assert [e["input"] for e in events if e["event"] == "image"] == [str(batch / "a.png"), str(batch / "b.png")]
    assert events[-1]["event"] == "done" and events[-1]["failed"] == 0
    # errors too
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--out", tmp_path / "e", "--op", "cs-gausian", "--log-json")
    (err,) = [_strict(line) for line in r.stderr.splitlines()]
    assert r.exit_code == 2 and err["event"] == "error" and "did you mean" in err["message"] and err["exit_code"] == 2
    # the fast schedule reports after every iteration, in evaluations spent out of the budget
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--out", tmp_path / "f", "--steps", "12", "--log-json")
    assert r.exit_code == 0, r.output
    events = [e for e in map(_strict, r.stderr.splitlines()) if e["event"] == "progress"]
    steps = [e["step"] for e in events]
    assert steps and steps == sorted(steps) and steps[-1] <= 12 and all(e["total"] == 12 for e in events)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--op", "cs-gausian"], "unknown operator 'cs-gausian' (did you mean 'cs-gaussian'?)"),
        (["--method", "surgry"], "unknown method 'surgry' (did you mean 'surgery'?)"),
        (["--prior", "dcgan-face-64"], "unknown prior 'dcgan-face-64' (did you mean 'dcgan-faces-64'?)"),
        (["--op", "inpaint", "--frac", "1.5"], "frac"),
        (["--op", "inpaint", "--frac", "0"], "frac"),
        (["--ratio", "0.00001"], "m"),
        (["--ratio", "1.5"], "ratio"),
        (["--cut", "7"], "outside the cut points"),
        (["--op", "superres", "--factor", "5"], "factor"),
        (["--noise-std", "-0.1"], "noise level must be"),
        (["--noise-convention", "bogus"], "unknown --noise-convention 'bogus'"),
        (["--noise-convention", "csnorm"], "did you mean 'cs-norm'"),
        (["--device", "cuda"], "no CUDA device"),
        (["--method", "csgm", "--cut", "1"], "--cut does not apply to --method csgm"),
        (["--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'"),
        (["--optimizer", "adm"], "unknown optimizer 'adm' (did you mean 'adam'?)"),
        (["--init", "zeros"], "unknown init 'zeros' (did you mean 'zero'?)"),
        (["--device", "cpuu"], "unknown --device 'cpuu' (did you mean 'cpu'?)"),
        (["--op", "blur", "--blur-boundary", "reflct"], "unknown blur boundary 'reflct' (did you mean 'reflect'?)"),
        (["--lr", "-1"], "lr must be a positive number"),
        (["--fit", "squash"], "unknown fit mode 'squash'"),
        (["--threads", "-1"], "--threads must be between 0 and"),
        (["--threads", "100000"], "--threads must be between 0 and"),
        (["--prune-after", "nan"], "prune_after must be in [0, 1], got nan"),
        (["--method", "csgm", "--prune-after", "5"], "prune_after must be in [0, 1], got 5.0"),
        (["--stop-tol", "-1"], "stop_tol must be a number >= 0"),
        (["--noise-std", "1e308"], "noise level must be a number in [0, 1e+06]"),
        (["--max-memory", "inf"], "--max-memory must be a number of GB > 0 and < 1e9"),
        (["--preset", "paper", "--lr", "1e308"], "lr must be a positive number up to 1e+30, got 1e+308"),
        # checked where the config is made (before the prior loads), not mid-solve
        (["--method", "hybrid", "--bf16-share", "1.5"], "bf16_share must be a number in [0, 1) (the share of evaluations run in bfloat16), got 1.5"),
        (["--method", "csgm", "--bf16-share", "-0.5"], "bf16_share must be a number in [0, 1)"),
    ],
)
def test_bad_options_exit_2(tmp_path, face, tiny_ckpt, args, message):
    if "--device" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a CUDA device is present")
    prior = [] if "--prior" in args else ["--prior", tiny_ckpt]
    r = run("reconstruct", face, *prior, "--out", tmp_path / "o", *FAST, *args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing written on bad input


def test_bad_files_exit_2(tmp_path, face, tiny_ckpt):
    (tmp_path / "junk.png").write_text("not an image")
    r = run("reconstruct", tmp_path / "junk.png", "--prior", tiny_ckpt, "--out", tmp_path / "o", *FAST)
    assert r.exit_code == 2 and "error: " in r.stderr
    r = run("reconstruct", face, "--measurements", face, "--prior", tiny_ckpt, *FAST)
    assert r.exit_code == 2 and "not both" in r.stderr
    r = run("reconstruct", "--prior", tiny_ckpt, *FAST)
    assert r.exit_code == 2 and "either an IMAGE" in r.stderr
    (tmp_path / "m.npz").write_bytes(b"PK\x03\x04garbage")
    r = run("reconstruct", "--measurements", tmp_path / "m.npz", "--prior", tiny_ckpt, *FAST)
    assert r.exit_code == 2 and "not a valid .npz" in r.stderr
    (tmp_path / "ck.pt").write_text("nope")
    r = run("reconstruct", face, "--prior", tmp_path / "ck.pt", *FAST)
    assert r.exit_code == 2 and "not a readable PyTorch checkpoint" in r.stderr
    r = run("reconstruct", face, "--prior", "no/such/file.pt", *FAST)
    assert r.exit_code == 2 and "does not exist" in r.stderr


def test_measurements_of_other_size_refused(tmp_path, face, tiny_ckpt):
    meas = tmp_path / "m.npz"
    assert run("measure", face, "-o", meas, "--size", "16").exit_code == 0
    r = run("reconstruct", "--measurements", meas, "--prior", tiny_ckpt, *FAST)
    assert r.exit_code == 2 and "measurements are of (3, 16, 16) images" in r.stderr


@pytest.mark.parametrize("method", ["pinv", "lasso-dct", "deep-decoder"])
def test_prior_free_methods_load_no_generator_and_take_any_size(tmp_path, face, method, monkeypatch):
    """pinv, lasso-dct and deep-decoder never load a generator (the zoo prior only names the
    image size, read from the manifest), and they reconstruct measurements of any image size."""
    import recon_core.generators.zoo as zoo

    def refuse(*a, **k):
        raise AssertionError("a prior-free method loaded a generator")

    monkeypatch.setattr(zoo, "resolve_prior", refuse)
    monkeypatch.setattr(zoo, "load_prior", refuse)
    meas = tmp_path / "m.npz"
    assert run("measure", face, "-o", meas, "--size", "32", "--op", "inpaint", "--frac", "0.5").exit_code == 0
    small = {"lasso-dct": ["--steps", "20"], "deep-decoder": ["--steps", "5", "--restarts", "1"]}.get(method, [])
    r = run("reconstruct", "--measurements", meas, "--truth", face, "--method", method, "--out", tmp_path / "o", "--quiet", *small)
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert rec["prior"]["loaded"] is False and rec["image"]["shape"][1:] == [32, 32] and rec["metrics"]["psnr"] is not None
    r = run("reconstruct", face, "--method", method, "--out", tmp_path / "o2", "--quiet", *small)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "o2" / "metrics.json").read_text())["prior"]["image_shape"] == [3, 64, 64]


def test_internal_error_is_one_line_unless_debug(tmp_path, face, tiny_ckpt, monkeypatch):
    from recon_core.solvers import METHODS, surgery

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setitem(METHODS, "surgery", (surgery.SurgeryConfig, boom))
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--out", tmp_path / "o", *FAST)
    assert r.exit_code == 1 and "internal error: RuntimeError: kaboom" in r.stderr and "Traceback" not in r.stderr
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--out", tmp_path / "o", *FAST, "--debug")
    assert r.exit_code == 1 and "Traceback" in r.stderr


def test_priors_lists_zoo():
    r = run("priors", "--json")
    assert r.exit_code == 0
    rows = json.loads(r.stdout)
    by_name = {row["name"]: row for row in rows}
    assert by_name["dcgan-faces-64"]["status"] == "installed" and all(row["status"] == "installed" for row in rows)
    # absolute paths (whatever the working directory), existing files
    assert all(Path(row["path"]).is_absolute() and Path(row["path"]).is_file() for row in rows)
    assert all(Path(row["samples"]).is_absolute() and Path(row["samples"]).is_file() for row in rows)


def test_priors_needs_no_torch():
    """`recon priors` reads the manifest only: listing the zoo never imports torch (fast)."""
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from recon_cli.app import app; "
            "r = CliRunner().invoke(app, ['priors']); assert r.exit_code == 0, r.output; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_priors_table_shows_full_names_and_sample_paths_at_80_columns(monkeypatch):
    from recon_core.generators import zoo

    monkeypatch.setenv("COLUMNS", "80")
    r = run("priors")
    assert r.exit_code == 0, r.output
    assert "…" not in r.stdout.split("samples")[0]  # nothing in the table is truncated
    for name in zoo.list_priors():
        assert f"\n {name} " in r.stdout and f"{name}: samples " in r.stdout and zoo.entry(name)["samples"] in r.stdout


def test_issue_example_command_as_written(tmp_path, face, monkeypatch):
    """`recon reconstruct img.png --op inpaint --frac 0.05 --method surgery --cut 2`, real prior."""
    monkeypatch.chdir(tmp_path)
    img = Path("img.png")
    img.write_bytes(face.read_bytes())
    r = run("reconstruct", "img.png", "--op", "inpaint", "--frac", "0.05", "--method", "surgery", "--cut", "2")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "recon_out" / "img" / "metrics.json").read_text())
    assert m["prior"]["name"] == "dcgan-faces-64" and m["method"]["config"]["cut"] == 2
    # the face is recovered far better than the zero-filled measurements (95% of pixels missing)
    zero_fill_psnr = 10 * np.log10(1 / np.mean(np.asarray(__import__("PIL.Image").Image.open(img), dtype=np.float64) ** 2 / 255**2 * 0.95))
    assert m["metrics"]["psnr"] > zero_fill_psnr + 5


@pytest.mark.parametrize("arch", sorted(registry.names()))
@pytest.mark.parametrize("method", ["surgery", "csgm"])
def test_every_architecture_end_to_end(tmp_path, face, arch, method):
    """`recon reconstruct --method surgery|csgm` with a tiny random-weight prior of each architecture."""
    from recon_core.generators.checkpoints import save_checkpoint
    from tests.conftest import tiny_prior

    ck = save_checkpoint(tiny_prior(arch), tmp_path / f"{arch}.pt")
    extra = ["--class", "2"] if arch == "biggan" else []
    r = run("reconstruct", face, "--prior", ck, "--out", tmp_path / "o", "--method", method, *FAST, "--json", *extra)
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["prior"]["architecture"] == arch and m["metrics"]["psnr"] > 0
    if arch == "biggan":
        assert m["prior"]["config"]["class_idx"] == 2


def test_prior_from_a_train_rtil_run_directory(tmp_path, face, tiny_ckpt):
    """--prior RUN_DIR: a `recon train-rtil` run directory is read through its checkpoint.pt; a
    directory that is neither a run nor an HF BigGAN model gets a one-line error."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(tiny_ckpt.read_bytes())
    r = run("reconstruct", face, "--prior", run_dir, "--out", tmp_path / "o", *FAST, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["prior"]["architecture"] == "dcgan"
    (tmp_path / "empty").mkdir()
    r = run("reconstruct", face, "--prior", tmp_path / "empty", "--out", tmp_path / "o2", *FAST)
    assert r.exit_code == 2 and "neither a `recon train-rtil` run (checkpoint.pt)" in r.stderr


def test_prior_options_errors(tmp_path, face, tiny_ckpt):
    r = run("reconstruct", face, "--arch", "dcgan", *FAST)
    assert r.exit_code == 2 and "apply to checkpoint paths" in r.stderr
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--prior-format", "rosinality", *FAST)
    assert r.exit_code == 2 and "not a 'rosinality' checkpoint" in r.stderr
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--prior-format", "nope", *FAST)
    assert r.exit_code == 2 and "unknown checkpoint format 'nope'" in r.stderr
    # --class / --truncation on a prior whose architecture has no such setting: one line naming the option
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--class", "3", *FAST)
    assert r.exit_code == 2 and "--class does not apply to a dcgan prior (only to: biggan)" in r.stderr
    assert "unexpected keyword" not in r.output
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--truncation", "0.5", *FAST)
    assert r.exit_code == 2 and "--truncation does not apply to a dcgan prior" in r.stderr


METHOD_FAST = {
    "csgm": ["--steps", "3"],
    "surgery": ["--steps", "2"],
    "ilo": ["--layers", "0,1,2", "--steps", "3,3,3", "--radii", "10,inf"],
    "mgan": ["--steps", "3", "--n-codes", "3", "--layer", "1"],
    "iagan": ["--csgm-steps", "3", "--steps", "3"],
    "deep-decoder": ["--steps", "3"],
    "hybrid": ["--n-pre", "2", "--steps", "3"],
    "lasso-dct": ["--steps", "5"],
    "pinv": [],
}


def test_every_method_is_registered_here():
    from recon_core.solvers import METHODS

    assert set(METHODS) == set(METHOD_FAST)


@pytest.mark.parametrize("method", sorted(METHOD_FAST))
def test_every_method_end_to_end(tmp_path, face, tiny_ckpt, method):
    restarts = [] if method in ("lasso-dct", "pinv") else ["--restarts", "2"]
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--out", tmp_path / "o", "--method", method, *METHOD_FAST[method],
            *restarts, "--quiet", "--json", "--backproject", "--op", "inpaint", "--frac", "0.5")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["method"]["name"] == method and m["metrics"]["psnr"] > 0
    assert m["extra"].get("backprojected") is True
    if method == "hybrid":
        assert isinstance(m["extra"]["alpha"], float) and isinstance(m["extra"]["beta"], float)
    if restarts:
        assert len(m["restarts"]["losses"]) == 2


def test_method_option_errors(tmp_path, face, tiny_ckpt):
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--method", "ilo", "--layers", "0,a", *FAST)
    assert r.exit_code == 2 and "--layers must be a comma-separated list" in r.stderr
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--method", "csgm", "--n-codes", "3", *FAST)
    assert r.exit_code == 2 and "--n-codes does not apply to --method csgm" in r.stderr
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--method", "surgery", "--restarts", "1", "--quiet", "--steps", "x")
    assert r.exit_code == 2 and "--steps must be an integer" in r.stderr


def test_prior_config_overrides(tmp_path, face, tiny_ckpt):
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--prior-config", '{"nz": 5}', *FAST)
    assert r.exit_code == 2 and "shape mismatch at 'main.0.weight'" in r.stderr  # the override reached the loader
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--prior-config", "{oops", *FAST)
    assert r.exit_code == 2 and "--prior-config must be a JSON object" in r.stderr
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--prior-config", "[1]", *FAST)
    assert r.exit_code == 2 and "--prior-config must be a JSON object" in r.stderr


def test_blur_boundary_option(tmp_path, face, tiny_ckpt):
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--op", "blur", "--kernel-size", "5", "--blur-boundary", "reflect",
            "--out", tmp_path / "o", *FAST, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["operator"]["boundary"] == "reflect"
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--op", "blur", "--blur-boundary", "zero", *FAST)
    assert r.exit_code == 2 and "boundary" in r.stderr


def _strict(text: str):
    """json.loads that rejects NaN / Infinity, as JSON.parse does."""
    def bad(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=bad)


def test_outputs_are_strict_json_when_psnr_is_infinite(tmp_path, face, tiny_ckpt):
    """denoise without noise + pinv gives x_hat == x: PSNR is +inf, written as null with a reason."""
    out = tmp_path / "o"
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--out", out, "--op", "denoise", "--method", "pinv", "--quiet", "--json")
    assert r.exit_code == 0, r.output
    for text in (r.stdout, (out / "metrics.json").read_text()):
        m = _strict(text)
        assert m["metrics"]["psnr"] is None and "not a finite number (inf)" in m["metrics"]["psnr_reason"]
    d = tmp_path / "batch"
    d.mkdir()
    save_image(torch.rand(1, 3, 32, 32), d / "a.png")
    save_image(torch.rand(1, 3, 32, 32), d / "b.png")
    r = run("reconstruct", d, "--prior", tiny_ckpt, "--out", tmp_path / "bo", "--op", "denoise", "--method", "pinv", "--quiet")
    assert r.exit_code == 0, r.output
    rows = _strict((tmp_path / "bo" / "summary.json").read_text())["images"]
    assert [row["metrics"]["psnr"] for row in rows] == [None, None]


def test_strict_json_helpers():
    from recon_core.io import dumps, finite, finite_metrics

    assert finite({"a": [1.0, float("nan"), (2, float("-inf"))], "b": True, "c": "x"}) == {"a": [1.0, None, [2, None]], "b": True, "c": "x"}
    assert _strict(dumps({"x": float("inf"), "y": torch.tensor(2.5)})) == {"x": None, "y": 2.5}
    m = finite_metrics({"psnr": float("inf"), "ssim": 1.0})
    assert m["psnr"] is None and "inf" in m["psnr_reason"] and m["ssim"] == 1.0 and "ssim_reason" not in m


def test_version_and_batch_json(tmp_path, face, tiny_ckpt):
    from recon_core import __version__

    r = run("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"recon {__version__}"
    d = tmp_path / "imgs"
    d.mkdir()
    save_image(torch.rand(1, 3, 32, 32), d / "a.png")
    (d / "b.png").write_bytes(b"")
    r = run("reconstruct", d, "--prior", tiny_ckpt, "--out", tmp_path / "o", *FAST, "--json")
    assert r.exit_code == 1
    doc = _strict(r.stdout)
    assert doc == _strict((tmp_path / "o" / "summary.json").read_text())
    assert [row["status"] for row in doc["images"]] == ["ok", "failed"]


@pytest.mark.parametrize("op, extra, size", [("superres", ["--factor", "4"], 8), ("blur", [], 32), ("denoise", ["--noise-std", "0.05"], 32),
                                             ("inpaint", ["--mask", "MASK"], 32)])
def test_observed_image_is_y(tmp_path, face64, tiny_ckpt, op, extra, size):
    """--observed: the image is y itself (degraded outside recon); no ground truth, the residual
    is reported, metrics.json is strict JSON and says so; a batch of observed images works."""
    import torch.nn.functional as F

    x = F.interpolate(face64, size=(32, 32), mode="bilinear", antialias=True)
    obs = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True).clamp(0, 1) if size != 32 else x
    if op == "inpaint":
        mask = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)) < 0.5
        save_image(mask.float(), tmp_path / "mask.png")
        obs = x * mask  # the damaged pixels are black
        extra = ["--mask", str(tmp_path / "mask.png")]
    d = tmp_path / "obs"
    d.mkdir()
    save_image(obs, d / "a.png")
    save_image(obs, d / "b.png")
    r = run("reconstruct", d / "a.png", "--observed", "--op", op, *extra, "--prior", tiny_ckpt, "--out", tmp_path / "o", *FAST, "--json")
    assert r.exit_code == 0, r.output
    m = _strict(r.stdout)
    assert m["metrics"]["psnr"] is None and "observed image" in m["metrics"]["psnr_reason"]
    assert m["metrics"]["residual"] is not None and m["image"]["observed"] is True and "fit_note" not in m["image"]
    assert (tmp_path / "o" / "measurements.npz").exists()
    r = run("reconstruct", d, "--observed", "--op", op, *extra, "--prior", tiny_ckpt, "--out", tmp_path / "b", *FAST)
    assert r.exit_code == 0, r.output
    assert [row["status"] for row in _strict((tmp_path / "b" / "summary.json").read_text())["images"]] == ["ok", "ok"]


def test_observed_size_is_fitted_and_stated(tmp_path, face64, tiny_ckpt):
    save_image(face64, tmp_path / "big.png")  # 64 px, but superres x4 at 32 px wants 8 px
    r = run("reconstruct", tmp_path / "big.png", "--observed", "--op", "superres", "--prior", tiny_ckpt, "--out", tmp_path / "o",
            *FAST, "--json")
    assert r.exit_code == 0, r.output
    note = _strict(r.stdout)["image"]["fit_note"]
    assert "64x64 image fitted" in note and "8x8" in note and note in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--op", "cs-gaussian"], "--observed works with --op superres|blur|denoise|inpaint"),
    (["--op", "inpaint"], "needs --mask FILE"),
    (["--op", "blur", "--truth", "T"], "--truth applies to --measurements"),
])
def test_observed_errors(tmp_path, face, tiny_ckpt, args, message):
    args = [str(face) if a == "T" else a for a in args]
    r = run("reconstruct", face, "--observed", *args, "--prior", tiny_ckpt, "--out", tmp_path / "o", *FAST)
    assert r.exit_code == 2 and message in r.stderr and not (tmp_path / "o").exists(), r.output


@pytest.mark.parametrize("command", ["reconstruct", "measure"])
@pytest.mark.parametrize("args, message", [
    (["--op", "cs-gaussian", "--frac", "0.3"], "--frac does not apply to --op cs-gaussian (its options: --ratio)"),
    (["--op", "superres", "--ratio", "0.2"], "--ratio does not apply to --op superres (its options: --factor)"),
    (["--op", "denoise", "--kernel-size", "5"], "--kernel-size does not apply to --op denoise (its options: none)"),
    (["--op", "inpaint", "--mask", "boxx"], "is neither; did you mean 'box'?"),
])
def test_operator_options_that_do_not_apply_are_errors(tmp_path, face, tiny_ckpt, command, args, message):
    out = ["--out", tmp_path / "o"] if command == "reconstruct" else ["-o", tmp_path / "o" / "m.npz"]
    r = run(command, face, *args, "--prior", tiny_ckpt, *out, *(FAST if command == "reconstruct" else []))
    assert r.exit_code == 2 and message in r.stderr and not (tmp_path / "o").exists(), r.output


def test_tiny_images_refused_and_enlargement_stated(tmp_path, tiny_ckpt):
    save_image(torch.rand(1, 3, 4, 4), tmp_path / "dot.png")
    r = run("reconstruct", tmp_path / "dot.png", "--prior", tiny_ckpt, "--out", tmp_path / "o", *FAST)
    assert r.exit_code == 2 and "too small" in r.stderr and not (tmp_path / "o").exists()
    save_image(torch.rand(1, 3, 16, 16), tmp_path / "small.png")
    r = run("reconstruct", tmp_path / "small.png", "--prior", tiny_ckpt, "--out", tmp_path / "s", *FAST, "--json")
    assert r.exit_code == 0 and "enlarged 2x" in r.stderr
    assert "enlarged 2x" in _strict(r.stdout)["image"]["fit_note"]


def test_readme_observed_example_runs_as_written(tmp_path):
    """The README's `--observed` worked example (a photo degraded with Pillow outside recon),
    run as written in a scratch folder; it writes the files its `ls` line lists."""
    import os
    import re
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    section = text[text.index("### Real degraded photos"):text.index("### Batches")]
    (script,) = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    (tmp_path / "recon_core").mkdir()
    (tmp_path / "recon_core" / "data").symlink_to(root / "recon_core" / "data")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    listed = set(re.findall(r"\w+\.(?:png|npz|json|npy)", script.split("ls observed_sr")[1]))
    assert listed == {p.name for p in (tmp_path / "observed_sr").iterdir()} == set(r.stdout.split())
    rec = json.loads((tmp_path / "observed_sr" / "metrics.json").read_text())
    assert rec["image"]["observed"] is True and rec["metrics"]["psnr"] is None and rec["metrics"]["residual"] is not None


def test_cli_name_lists_match_the_registries():
    """The CLI writes the registries' names out (so that `--help` imports no torch): each list
    must be exactly its registry's names."""
    from recon_cli import common
    from recon_core.generators.checkpoints import FORMATS
    from recon_core.operators import noise
    from recon_core.operators.base import list_operators
    from recon_core.solvers import FAST_METHODS, METHODS
    from recon_core.sweep import RATIO_PARAM

    # 'composed' is built from parts in Python (recon_core.operators.composed.compose); the CLI has no flag for it
    assert sorted(common.OPS) == [k for k in list_operators() if k != "composed"]
    assert common.NOISE_CONVENTIONS == noise.CONVENTIONS
    assert common.SWEEP_OPS == tuple(RATIO_PARAM)
    assert sorted(common.METHOD_NAMES) == sorted(METHODS)
    assert sorted(common.FAST_METHOD_NAMES) == sorted(FAST_METHODS)
    assert common.ARCH_NAMES == registry.names()
    assert sorted(common.FORMAT_NAMES) == sorted(FORMATS)
