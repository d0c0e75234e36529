"""Every bad input of the CLI: one-line message, exit code 2, nothing written; and property
tests (operator specs, random option values)."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from recon_cli.app import app
from recon_core.images import save_image
from recon_core.operators import build, from_spec
from tests.conftest import tiny_prior

runner = CliRunner()
FAST = ["--steps", "1", "--restarts", "1", "--quiet"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_bad(r, message):
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.output


@pytest.fixture
def face(tmp_path, face64):
    return save_image(face64, tmp_path / "face.png")


def _bomb(path):
    """A valid small PNG whose header claims 100000 x 100000 pixels (CRC fixed)."""
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = data[12:29]
    ihdr[4:12] = struct.pack(">II", 100000, 100000)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: (p.write_text("hello, not an image"), p)[1], "not an image"),
        (lambda p: (p.write_bytes(b""), p)[1], "empty"),
        (lambda p: _bomb(p), "pixels"),
    ],
)
def test_bad_image_files(tmp_path, tiny_ckpt, make, message):
    path = make(tmp_path / "bad.png")
    assert_bad(run("reconstruct", path, "--prior", tiny_ckpt, "--out", tmp_path / "o", *FAST), message)
    assert not (tmp_path / "o").exists()


def test_truncated_png_and_jpeg(tmp_path, face, tiny_ckpt):
    data = face.read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    r = run("reconstruct", tmp_path / "t.png", "--prior", tiny_ckpt, "--out", tmp_path / "o", *FAST)
    assert r.exit_code == 2 and "error: " in r.stderr
    buf = io.BytesIO()
    Image.open(face).save(buf, format="JPEG")
    (tmp_path / "t.jpg").write_bytes(buf.getvalue()[:300])
    r = run("reconstruct", tmp_path / "t.jpg", "--prior", tiny_ckpt, "--out", tmp_path / "o", *FAST)
    assert r.exit_code == 2 and "error: " in r.stderr
    # a PNG with a .jpg name is read by content
    (tmp_path / "png.jpg").write_bytes(data)
    assert run("reconstruct", tmp_path / "png.jpg", "--prior", tiny_ckpt, "--out", tmp_path / "ok", *FAST).exit_code == 0


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_image_modes_are_handled(tmp_path, face, tiny_ckpt, mode):
    im = Image.open(face)
    if mode == "I;16":
        arr = (np.asarray(im.convert("L"), dtype=np.uint16) * 257)
        im = Image.fromarray(arr)
    else:
        im = im.convert(mode)
    im.save(tmp_path / "m.png")
    r = run("reconstruct", tmp_path / "m.png", "--prior", tiny_ckpt, "--out", tmp_path / "o", *FAST, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["image"]["shape"] == [3, 32, 32]


def test_image_smaller_than_prior_with_crop(tmp_path, tiny_ckpt):
    save_image(torch.rand(1, 3, 20, 20), tmp_path / "small.png")
    assert_bad(run("reconstruct", tmp_path / "small.png", "--prior", tiny_ckpt, "--fit", "crop", *FAST), "smaller than")


def test_dense_operator_over_memory_budget(tmp_path, face, tiny_ckpt):
    r = run("reconstruct", face, "--prior", tiny_ckpt, "--out", tmp_path / "o", *FAST, "--op", "cs-gaussian", "--ratio", "0.5",
            "--max-memory", "0.001")
    assert_bad(r, "use cs-circulant")
    r = run("reconstruct", face, "--prior", tiny_ckpt, *FAST, "--max-memory", "-1")
    assert_bad(r, "--max-memory must be a number of GB > 0")
    with pytest.raises(Exception, match="over the memory budget"):
        build("cs-gaussian", (3, 1024, 1024), ratio=0.1, max_bytes=10**9)


@pytest.fixture
def meas(tmp_path, face, tiny_ckpt):
    path = tmp_path / "m.npz"
    assert run("measure", face, "-o", path, "--prior", tiny_ckpt).exit_code == 0
    with np.load(path) as f:
        return path, json.loads(str(f["meta"])), f["y"]


def _npz(path, **arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize(
    "variant, message",
    [
        ("missing", "lacks the field(s) meta"),
        ("pickled", "pickled objects"),
        ("shape", "y has shape"),
        ("newer", "newer than this recon reads"),
        ("unknown-op", "unknown operator"),
    ],
)
def test_bad_measurement_files(tmp_path, meas, tiny_ckpt, variant, message):
    _, meta, y = meas
    p = tmp_path / f"{variant}.npz"
    if variant == "missing":
        _npz(p, y=y)
    elif variant == "pickled":
        _npz(p, y=y, meta=np.array([{"a": 1}], dtype=object))
    elif variant == "shape":
        _npz(p, y=y[:5], meta=np.array(json.dumps(meta)))
    elif variant == "newer":
        _npz(p, y=y, meta=np.array(json.dumps({**meta, "schema_version": 99})))
    else:
        _npz(p, y=y, meta=np.array(json.dumps({**meta, "operator": {**meta["operator"], "kind": "cs-magic"}})))
    assert_bad(run("reconstruct", "--measurements", p, "--prior", tiny_ckpt, "--out", tmp_path / "o", *FAST), message)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_via_cli(tmp_path, face):
    marker = tmp_path / "marker"
    torch.save({"state": _Evil(marker)}, tmp_path / "evil.pt")
    assert_bad(run("reconstruct", face, "--prior", tmp_path / "evil.pt", *FAST), "refusing to load")
    assert not marker.exists()


def test_checkpoint_wrong_shapes_via_cli(tmp_path, face, tiny_ckpt):
    obj = torch.load(tiny_ckpt, weights_only=True)
    obj["state_dict"]["main.0.weight"] = torch.zeros(1, 2, 3, 4)
    torch.save(obj, tmp_path / "wrong.pt")
    assert_bad(run("reconstruct", face, "--prior", tmp_path / "wrong.pt", *FAST), "shape mismatch at 'main.0.weight'")


# ---- property tests --------------------------------------------------------------------------

KIND_PARAMS = {
    "identity": st.just({}),
    "cs-gaussian": st.fixed_dictionaries({"ratio": st.floats(0.05, 1.0)}),
    "cs-circulant": st.fixed_dictionaries({"ratio": st.floats(0.05, 1.0)}),
    "cs-fourier": st.fixed_dictionaries({"ratio": st.floats(0.05, 1.0)}),
    "inpaint": st.fixed_dictionaries({"frac": st.floats(0.05, 1.0), "mask": st.sampled_from(["random", "box"])}),
    "superres": st.fixed_dictionaries({"factor": st.sampled_from([2, 4, 8])}),
    "blur": st.fixed_dictionaries({"kernel_size": st.sampled_from([1, 3, 5, 7])}),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(KIND_PARAMS)), data=st.data(), seed=st.integers(0, 2**31 - 1), c=st.sampled_from([1, 3]))
def test_operator_spec_round_trip(kind, data, seed, c):
    params = data.draw(KIND_PARAMS[kind])
    A = build(kind, (c, 16, 16), seed=seed, **params)
    B = from_spec(json.loads(json.dumps(A.spec())))
    x = torch.rand(2, c, 16, 16, generator=torch.Generator().manual_seed(seed % 1000))
    assert B.spec() == A.spec() and torch.equal(A.A(x), B.A(x))


_values = st.one_of(st.text(max_size=12), st.integers(-10**6, 10**6).map(str),
                    st.floats(allow_nan=True, allow_infinity=True).map(str))


def _value_options() -> list:
    """Every option of `recon reconstruct` that takes a value (the method options included, as
    the app generates them), except those naming files or folders: new options are fuzzed too."""
    import typer

    group = typer.main.get_command(app)
    cmd = group.get_command(group.make_context("recon", ["reconstruct", "--help"], resilient_parsing=True), "reconstruct")
    paths = {"out", "measurements", "truth", "list_file", "prior", "mask"}
    return sorted(p.opts[0] for p in cmd.params if type(p).__name__.endswith("Option") and not getattr(p, "is_flag", False)
                  and p.name not in paths)


_options = st.sampled_from(_value_options())


def test_the_fuzzed_options_are_the_commands():
    assert {"--ratio", "--noise-std", "--prune-after", "--stop-tol", "--max-memory", "--n-codes"} <= set(_value_options())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(opts=st.lists(st.tuples(_options, _values), min_size=1, max_size=3))
def test_random_option_values_never_traceback(tmp_path, face, tiny_ckpt, opts):
    flat = [s for pair in opts for s in pair]
    r = runner.invoke(app, ["reconstruct", str(face), "--prior", str(tiny_ckpt), "--out", str(tmp_path / "o"), "--force",
                            "--steps", "1", "--restarts", "1", "--quiet", *flat])
    assert r.exit_code in (0, 1, 2), (flat, r.output)
    assert "Traceback" not in r.output, (flat, r.output)
    if r.exit_code == 1:  # runtime failures are clean one-liners too, never internal errors
        assert "internal error" not in r.stderr, (flat, r.stderr)


# ---- the Python API: bad arguments are ReconErrors with one-line messages, never torch errors


@pytest.fixture(scope="module")
def api_case():
    import recon_core as rc

    A = rc.operator("inpaint", (3, 16, 16), frac=0.5, seed=0)
    return rc, A, A(torch.rand(1, 3, 16, 16))


@pytest.mark.parametrize("call, match", [
    (lambda rc, A, y: rc.operator("cs-gaussian", (3, 0, 16), ratio=0.1), r"img_shape must be \(C, H, W\) of positive integers"),
    (lambda rc, A, y: rc.operator("cs-gaussian", "abc", ratio=0.1), "img_shape must be"),
    (lambda rc, A, y: rc.operator("cs-gaussian", (3, 16, 16), rate=0.1), "cs-gaussian takes ratio; got rate"),
    (lambda rc, A, y: A(torch.zeros(1, 3, 16, 16, dtype=torch.int64)), "images must be a floating-point tensor"),
    (lambda rc, A, y: A(torch.zeros(1, 3, 16, 16).numpy()), r"images must be a torch.Tensor, got ndarray"),
    (lambda rc, A, y: rc.solve("pinv", A, y.numpy()), "measurements must be a torch.Tensor"),
    (lambda rc, A, y: rc.solve("pinv", A, y, noise_std=float("nan")), r"noise_std must be a number in \[0, 1e\+12\], got nan"),
    (lambda rc, A, y: rc.solve("pinv", A, y, noise_std=-1.0), r"noise_std must be a number in \[0, 1e\+12\], got -1.0"),
    (lambda rc, A, y: rc.solve("pinv", A, y, noise_std=1e200), r"noise_std must be a number in \[0, 1e\+12\], got 1e\+200"),
    (lambda rc, A, y: rc.solve("pinv", A, y, seed="a"), "seed must be an integer, got 'a'"),
    (lambda rc, A, y: tiny_prior("dcgan").sample(-1), "n must be a positive integer, got -1"),
    (lambda rc, A, y: tiny_prior("dcgan").sample(2.5), "n must be a positive integer, got 2.5"),
])
def test_python_api_bad_arguments(api_case, call, match):
    from recon_core.errors import ReconError

    with pytest.raises(ReconError, match=match):
        call(*api_case)


def test_python_api_takes_numpy_scalars():
    """The checks above refuse wrong types, not NumPy's scalar types."""
    import recon_core as rc
    from recon_core.errors import ReconError

    A = rc.operator("inpaint", (3, 16, 16), frac=0.5, seed=0)
    y = A(torch.rand(1, 3, 16, 16))
    assert rc.solve("pinv", A, y, noise_std=np.float32(0.01), seed=np.int64(1)).x_hat.shape == (1, 3, 16, 16)
    assert tiny_prior("dcgan").sample(np.int64(2)).shape[0] == 2
    G = tiny_prior("dcgan")
    A = rc.operator("inpaint", (3, 32, 32), frac=0.5, seed=0)
    res = rc.solve("csgm", A, A(torch.rand(1, 3, 32, 32)), G, preset="paper", lr=np.float32(0.1), steps=np.int64(2), restarts=np.int64(2))
    assert len(res.losses) == 2
    # a NumPy seed draws what the same Python int draws (it was a TypeError in manual_seed)
    assert torch.equal(G.sample(2, np.int64(3)), G.sample(2, 3))
    # the methods' own checks share errors.is_int / is_real: NumPy in, bools out
    res = rc.solve("ilo", A, A(torch.rand(1, 3, 32, 32)), G, preset="paper", layers=(0, np.int64(1)), steps=(2, 2),
                   radii=(np.float32(5.0),), restarts=1)
    assert res.x_hat.shape == (1, 3, 32, 32)
    with pytest.raises(ReconError, match="cut True is outside"):  # a bool is not cut 1
        rc.solve("surgery", A, A(torch.rand(1, 3, 32, 32)), G, cut=True)
    with pytest.raises(ReconError, match="radius"):
        rc.solve("ilo", A, A(torch.rand(1, 3, 32, 32)), G, preset="paper", layers=(0, 1), steps=(2, 2), radii=(True,), restarts=1)


@pytest.mark.parametrize("value,integer,real", [(3, True, True), (np.int64(3), True, True), (2.5, False, True),
                                                (np.float32(2.5), False, True), (True, False, False), (np.bool_(True), False, False),
                                                ("3", False, False), (None, False, False), (torch.tensor(3), False, False)])
def test_is_int_and_is_real(value, integer, real):
    from recon_core.errors import is_int, is_real

    assert (is_int(value), is_real(value)) == (integer, real)
