"""The deepinv bridge: deepinv's own adjointness test on every recon operator, recon's solvers on
deepinv operators, round trips, deepinv's CSGMGenerator on a recon prior, error paths."""

from __future__ import annotations

import sys

import pytest
import torch

from recon_core.errors import BadInput, MissingDependency, OperatorError
from recon_core.measurements import save_measurements
from recon_core.operators import NoiseSpec, build, compose, from_spec
from recon_core.solvers import csgm, surgery
from recon_core.solvers.common import Problem
from tests.conftest import tiny_prior
from tests.operators.test_operators import IDS, SWEEP

dinv = pytest.importorskip("deepinv")
bridge = pytest.importorskip("recon_core.interop.deepinv")

#: deepinv's adjointness_test returns |<A u, v> - <u, A^T v>| / |<A u, v>| (Monte Carlo)
ADJ_TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", SWEEP, ids=IDS)
def test_deepinv_adjointness_test_on_every_recon_operator(case, dtype):
    kind, params, shape = case
    physics = bridge.to_deepinv(build(kind, shape, seed=3, **params))
    assert isinstance(physics, dinv.physics.LinearPhysics)
    torch.manual_seed(0)  # deepinv draws its test vectors from the global generator
    err = physics.adjointness_test(img_size=shape, num_samples=4, dtype=dtype)
    assert float(err) < ADJ_TOL[dtype]


def test_every_registered_operator_is_in_the_bridge_sweep():
    from recon_core.operators import get, list_operators

    assert {get(n).kind for n in list_operators()} == {k for k, _, _ in SWEEP}


@pytest.mark.parametrize("case", SWEEP, ids=IDS)
def test_round_trip_gives_the_same_operator(case):
    kind, params, shape = case
    op = build(kind, shape, seed=3, **params)
    physics = bridge.to_deepinv(op)
    assert bridge.from_deepinv(physics, shape) is op  # unwrapped: still serialisable
    back = bridge.from_deepinv(physics, shape, unwrap=False)
    assert isinstance(back, bridge.DeepinvOperator) and back.meas_shape == op.meas_shape
    x = torch.rand((2,) + shape, generator=torch.Generator().manual_seed(1))
    y = op.A(x)
    assert torch.equal(back.A(x), y) and torch.equal(physics(x), y) and torch.equal(physics.A(x), y)
    assert torch.equal(back.A_adjoint(y), op.A_adjoint(y)) and torch.equal(physics.A_adjoint(y), op.A_adjoint(y))
    assert torch.equal(physics.A_dagger(y), op.A_dagger(y))


def test_to_deepinv_noise_and_device():
    op = build("identity", (1, 64, 64))
    physics = bridge.to_deepinv(op, noise=NoiseSpec("per-entry", 0.1))
    torch.manual_seed(0)
    y = physics(torch.zeros(2, 1, 64, 64))
    assert y.std().item() == pytest.approx(0.1, rel=0.05)
    assert torch.equal(physics.A(torch.ones(1, 1, 64, 64)), torch.ones(1, 1, 64, 64))  # A is noise-free
    gauss = build("cs-gaussian", (1, 8, 8), ratio=0.5)
    physics = bridge.to_deepinv(gauss)
    assert physics.to("cpu") is physics and physics.op is gauss and "op.matrix" in physics.state_dict()


def _deepinv_ops(shape):
    """A deepinv inpainting (fixed mask) and a deepinv circular Gaussian blur for ``shape``."""
    from deepinv.physics.functional.blur import gaussian_blur

    mask = (torch.rand(shape[1:], generator=torch.Generator().manual_seed(0)) < 0.5).float()
    filt = gaussian_blur(sigma=(1.0, 1.0))
    filt = filt.unsqueeze(1) if filt.dim() == 3 else filt  # (1, 1, k, k)
    return {
        "inpainting": dinv.physics.Inpainting(img_size=shape, mask=mask),
        "blur": dinv.physics.Blur(filter=filt, padding="circular"),
    }


@pytest.mark.parametrize("physics_name", ["inpainting", "blur"])
@pytest.mark.parametrize("method", ["csgm", "surgery"])
def test_recon_solvers_on_deepinv_operators(method, physics_name):
    prior = tiny_prior("dcgan")
    shape = (3, 32, 32)
    A = bridge.from_deepinv(_deepinv_ops(shape)[physics_name], shape)
    assert A.meas_shape == shape and A.previewable
    with torch.no_grad():
        x = prior(prior.sample_latent(1, torch.Generator().manual_seed(9)))
    problem = Problem(A, A.A(x))
    if method == "csgm":
        res = csgm.solve(problem, prior, csgm.CSGMConfig(steps=30, restarts=2, lr=0.05), seed=1)
    else:
        res = surgery.solve(problem, prior, surgery.SurgeryConfig(steps=4, restarts=2), seed=1)
    first, last = res.history[0]["loss"], res.history[-1]["loss"]
    assert last < 0.5 * first  # the measurement residual goes down
    assert res.x_hat.shape == (1,) + shape and 0 <= float(res.x_hat.min()) and float(res.x_hat.max()) <= 1
    # the residual of x_hat against y matches the solver's best loss
    assert float((A.A(res.x_hat) - problem.y).pow(2).sum()) == pytest.approx(min(res.losses), rel=1e-3)


def test_deepinv_operator_dagger_backproject_and_preview():
    shape = (3, 16, 16)
    blur = _deepinv_ops(shape)["blur"]
    A = bridge.from_deepinv(blur, shape)
    x = torch.rand((1,) + shape, generator=torch.Generator().manual_seed(2))
    y = A.A(x)
    assert torch.equal(A.A_dagger(y), blur.A_dagger(y))  # deepinv's own pseudo-inverse
    bp = A.backproject(torch.zeros_like(x), y)  # recon's CG on A A^T
    assert float((A.A(bp) - y).norm() / y.norm()) < 1e-4
    assert torch.equal(A.preview(y), y.clamp(0, 1))
    cs = bridge.from_deepinv(dinv.physics.CompressedSensing(m=50, img_size=(1, 8, 8)), (1, 8, 8))
    assert cs.meas_shape == (50,) and not cs.previewable and cs.preview(cs.A(torch.zeros(1, 1, 8, 8))) is None
    assert cs.to("cpu") is cs and "physics._A" in cs.state_dict()


def test_deepinv_csgm_generator_on_a_recon_prior_and_operator():
    """The benchmark's path: deepinv's CSGMGenerator optimising a recon prior's latent against a
    recon operator (through to_deepinv)."""
    prior = tiny_prior("dcgan")
    G = bridge.as_deepinv_generator(prior)
    assert G.nz == 8
    z = torch.randn(2, 8, 1, 1)
    assert torch.equal(G(z), prior({"z": z.reshape(2, 8)}))
    op = build("cs-gaussian", (3, 32, 32), seed=1, ratio=0.1)
    with torch.no_grad():
        x = prior(prior.sample_latent(1, torch.Generator().manual_seed(3)))
    y = op.A(x)
    model = dinv.models.CSGMGenerator(G, inf_max_iter=30, inf_tol=0.0, inf_lr=0.05).eval()
    torch.manual_seed(0)
    z0 = model.random_latent("cpu", requires_grad=False)
    with torch.no_grad():
        start = float((op.A(G(z0)) - y).pow(2).sum())
    torch.manual_seed(0)  # the same z0 inside forward
    with torch.no_grad():
        x_hat = model(y, bridge.to_deepinv(op))
    assert x_hat.shape == x.shape and float((op.A(x_hat) - y).pow(2).sum()) < 0.5 * start


# ---------------------------------------------------------------------------------------------
# error paths
def test_wrapped_deepinv_physics_is_not_serialisable(tmp_path):
    A = bridge.from_deepinv(_deepinv_ops((1, 8, 8))["blur"], (1, 8, 8))
    spec = A.spec()
    assert spec["kind"] == "deepinv" and spec["serialisable"] is False and spec["physics"].endswith("Blur")
    with pytest.raises(OperatorError, match="operator 'deepinv' cannot be rebuilt from its spec: it wraps a deepinv Blur object"):
        from_spec(spec)
    with pytest.raises(OperatorError, match="cannot save measurements of a 'deepinv' operator"):
        save_measurements(tmp_path / "y.npz", A.A(torch.zeros(1, 1, 8, 8)), A, NoiseSpec())
    # two wrapped objects never share a spec (batched solving treats equal specs as one operator)
    B = bridge.from_deepinv(_deepinv_ops((1, 8, 8))["blur"], (1, 8, 8))
    assert B.spec() != spec


def test_bridge_argument_errors():
    with pytest.raises(OperatorError, match="to_deepinv needs a recon LinearOperator, got str"):
        bridge.to_deepinv("blur")
    with pytest.raises(BadInput, match="noise must be a NoiseSpec or None, got float"):
        bridge.to_deepinv(build("identity", (1, 4, 4)), noise=0.1)
    nonlinear = dinv.physics.Physics(A=lambda x: x.square())
    with pytest.raises(OperatorError, match="from_deepinv needs a deepinv LinearPhysics .* got Physics"):
        bridge.from_deepinv(nonlinear, (1, 4, 4))
    physics = bridge.to_deepinv(build("identity", (1, 4, 4)))
    with pytest.raises(OperatorError, match=r"takes images \(1, 4, 4\), not \(1, 8, 8\)"):
        bridge.from_deepinv(physics, (1, 8, 8))
    with pytest.raises(OperatorError, match="expected images of shape"):
        bridge.from_deepinv(physics, (1, 4, 4), unwrap=False).A(torch.zeros(1, 1, 8, 8))
    with pytest.raises(BadInput, match="needs a prior whose latent is one vector; biggan"):
        bridge.as_deepinv_generator(tiny_prior("biggan"))


def test_missing_deepinv_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepinv", None)  # import deepinv -> ImportError
    bridge._physics_class.cache_clear()
    try:
        with pytest.raises(MissingDependency, match=r"pip install recon\[deepinv\]"):
            bridge.to_deepinv(build("identity", (1, 4, 4)))
        with pytest.raises(MissingDependency, match=r"pip install recon\[deepinv\]"):
            bridge.from_deepinv(object(), (1, 4, 4))
    finally:
        bridge._physics_class.cache_clear()


def test_composed_operator_through_the_bridge():
    """A recon composition of a deepinv blur and recon's downsampling, and back to deepinv."""
    shape = (3, 16, 16)
    blur = bridge.from_deepinv(_deepinv_ops(shape)["blur"], shape)
    op = compose(blur, build("superres", shape, factor=2))
    torch.manual_seed(0)
    assert float(bridge.to_deepinv(op).adjointness_test(img_size=shape, num_samples=4)) < 1e-5
    with pytest.raises(OperatorError, match="operator 'composed' cannot be rebuilt from its spec: part 0: it wraps a deepinv Blur"):
        from_spec(op.spec())


#: the README's deepinv example, verbatim (README.md "deepinv bridge"); run as written below
README_DEEPINV = '''\
import deepinv as dinv
import torch
from recon_core.generators.zoo import load_prior
from recon_core.images import example_image
from recon_core.interop.deepinv import from_deepinv, to_deepinv
from recon_core.operators import build
from recon_core.solvers import csgm
from recon_core.solvers.common import Problem

# a recon operator as a deepinv LinearPhysics: deepinv's tools run on it
physics = to_deepinv(build("cs-gaussian", (3, 64, 64), ratio=0.1, seed=0))
assert physics.adjointness_test(img_size=(3, 64, 64)) < 1e-5

# a deepinv physics as a recon operator: recon's solvers run on it
torch.manual_seed(0)  # deepinv draws the random mask from torch's global generator
A = from_deepinv(dinv.physics.Inpainting(img_size=(3, 64, 64), mask=0.3), (3, 64, 64))
x = example_image(size=64)  # (1, 3, 64, 64) in [0, 1]
result = csgm.solve(Problem(A, A(x)), load_prior("dcgan-faces-64"), csgm.CSGMConfig(steps=100))
print(float((A(result.x_hat) - A(x)).norm() / A(x).norm()))  # relative measurement residual
'''


def test_readme_deepinv_example_runs():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert README_DEEPINV in readme, 'README no longer shows this example as written'
    env = {}
    exec(README_DEEPINV, env)
    A, x, res = env["A"], env["x"], env["result"]
    assert float((A(res.x_hat) - A(x)).norm() / A(x).norm()) < 0.5
