"""Operators as torch.nn.Modules (forward, buffers, .to, state_dict, copies) and composition."""

from __future__ import annotations

import copy
import json
import pickle

import pytest
import torch
from torch import nn

from recon_core.errors import BadInput, OperatorError
from recon_core.measurements import load_measurements, save_measurements
from recon_core.operators import ComposedOperator, NoiseSpec, StackedOperator, build, compose, from_spec

from tests.operators.test_operators import IDS, SWEEP, _x, _y

#: the buffers each family registers (what state_dict() holds)
BUFFERS = {
    "identity": set(),
    "superres": set(),
    "blur": set(),
    "cs-gaussian": {"matrix"},
    "cs-circulant": {"signs", "g_hat", "rows"},
    "cs-fourier": {"re_half", "im_half", "re_full", "im_full", "re_scale"},
    "inpaint": {"pixels"},
}


@pytest.mark.parametrize("case", SWEEP, ids=IDS)
def test_module_contract(case):
    """op(x) is op.A(x); buffers are in state_dict; copies and pickles are the same operator."""
    kind, params, shape = case
    op = build(kind, shape, seed=4, **params)
    assert isinstance(op, nn.Module)
    x, y = _x(op), _y(op)
    assert torch.equal(op(x), op.A(x))
    keys = set(op.state_dict())
    if kind == "composed":
        expected = {f"parts.{j}.{b}" for j, p in enumerate(op.parts) for b in BUFFERS[p.kind]}
    else:
        expected = BUFFERS[kind]
    assert keys == expected
    for twin in (copy.deepcopy(op), pickle.loads(pickle.dumps(op))):
        assert twin.spec() == op.spec()
        assert torch.equal(twin.A(x), op.A(x)) and torch.equal(twin.A_adjoint(y), op.A_adjoint(y))
    # a fresh operator of another seed takes this one's buffers through load_state_dict
    other = build(kind, shape, seed=5, **params)
    other.load_state_dict(op.state_dict())
    assert torch.equal(other.A(x), op.A(x))
    assert str(shape[0]) in repr(op) and kind.split("-")[0] in repr(op).lower()


@pytest.mark.parametrize("case", SWEEP, ids=IDS)
def test_to_moves_in_place_and_keeps_the_operator(case):
    """.to() follows torch (in place, returns self); caches built before are dropped and rebuilt,
    results are unchanged; a dtype cast of the buffers does not change the output dtype."""
    kind, params, shape = case
    op = build(kind, shape, seed=4, **params)
    x, y = _x(op, dtype=torch.float32), _y(op, dtype=torch.float32)
    before = (op.A(x), op.A_adjoint(y), op.A_dagger(y))
    assert op.to("cpu") is op and op.device == torch.device("cpu")
    after = (op.A(x), op.A_adjoint(y), op.A_dagger(y))
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    op.double()  # casts floating buffers (e.g. the Gaussian matrix): the operator stays the same map
    out = op.A(x)
    assert out.dtype == torch.float32 and torch.allclose(out, before[0], rtol=1e-5, atol=1e-6)


def test_caches_are_dropped_when_moving():
    op = build("cs-gaussian", (1, 8, 8), ratio=0.5)
    op.A_dagger(_y(op))
    assert op._chol is not None
    op.to("cpu")
    assert op._chol is None
    blur = build("blur", (1, 8, 8), kernel_size=3)
    blur.A_dagger(_y(blur))
    assert blur._cache
    blur.float()
    assert blur._cache is None


def test_stacked_moves_its_parts():
    parts = [build("cs-gaussian", (1, 8, 8), seed=s, ratio=0.5) for s in (1, 2)]
    st = StackedOperator(parts)
    assert isinstance(st.parts, nn.ModuleList) and set(st.state_dict()) == {"parts.0.matrix", "parts.1.matrix"}
    assert st.to("cpu") is st


# ---------------------------------------------------------------------------------------------
# composition
def test_compose_applies_in_order():
    blur = build("blur", (3, 16, 16), kernel_size=5)
    sr = build("superres", (3, 16, 16), factor=4)
    op = compose(blur, sr)
    assert isinstance(op, ComposedOperator) and op.meas_shape == (3, 4, 4) and op.img_shape == (3, 16, 16)
    x, y = _x(op), _y(op)
    assert torch.equal(op.A(x), sr.A(blur.A(x)))
    assert torch.equal(op.A_adjoint(y), blur.A_adjoint(sr.A_adjoint(y)))
    assert op.parts[0] is blur and op.parts[1] is sr  # shared, not copied
    # the spec lists the parts' full specs; from_spec rebuilds the same map
    spec = json.loads(json.dumps(op.spec()))
    assert spec["kind"] == "composed" and [p["kind"] for p in spec["parts"]] == ["blur", "superres"]
    assert spec["parts"][0] == blur.spec()
    assert torch.equal(from_spec(spec).A(x), op.A(x))
    # nested compositions are flattened
    nested = compose(compose(build("identity", (3, 16, 16)), blur), sr)
    assert [p.kind for p in nested.parts] == ["identity", "blur", "superres"]
    # preview: the last part's (superres: the low-resolution image enlarged)
    assert torch.equal(op.preview(y.float()), sr.preview(y.float()))


def test_composed_parts_inherit_seed_and_shape():
    spec = {"kind": "composed", "img_shape": [1, 8, 8], "seed": 7,
            "parts": [{"kind": "superres", "factor": 2}, {"kind": "cs-gaussian", "ratio": 0.5}]}
    op = from_spec(spec)
    gauss = op.parts[1]
    assert gauss.seed == 7 and gauss.img_shape == (1, 4, 4) and op.meas_shape == (8,)
    assert torch.equal(gauss.matrix, build("cs-gaussian", (1, 4, 4), seed=7, ratio=0.5).matrix)
    assert op.spec()["parts"][1] == gauss.spec()
    assert not op.previewable and op.preview(op.A(_x(op))) is None


def test_composed_dagger_is_the_least_squares_solution():
    """A_dagger(y) is the minimum-norm solution: A x = y and x in the row space of A."""
    op = compose(build("blur", (1, 8, 8), kernel_size=3), build("superres", (1, 8, 8), factor=2))
    y = _y(op, n=1)
    xd = op.A_dagger(y)
    assert torch.allclose(op.A(xd), y, atol=1e-8)
    # x in range(A^T): solving A A^T u = y by least squares gives the same point
    M = op.A(torch.eye(op.n, dtype=torch.float64).reshape((op.n,) + op.img_shape)).reshape(op.n, op.m).T
    ref = torch.linalg.lstsq(M, y.reshape(-1, 1), driver="gelsd").solution.reshape(xd.shape)
    assert torch.allclose(xd, ref, atol=1e-8)


def test_composed_measurements_file(tmp_path):
    op = compose(build("blur", (3, 16, 16), kernel_size=3), build("inpaint", (3, 16, 16), frac=0.5, seed=2))
    x = _x(op, n=1, dtype=torch.float32)
    y = op.A(x)
    path = save_measurements(tmp_path / "y.npz", y, op, NoiseSpec())
    y2, op2, _, _ = load_measurements(path)
    assert op2.spec() == op.spec() and torch.equal(y2, y) and torch.equal(op2.A(x), y)


def test_composed_memory_budget():
    spec = {"kind": "composed", "img_shape": [3, 64, 64], "parts": [{"kind": "blur"}, {"kind": "cs-gaussian", "ratio": 0.5}]}
    with pytest.raises(OperatorError, match="over the memory budget"):
        from_spec(spec, max_bytes=10**7)


@pytest.mark.parametrize(
    "parts, match",
    [
        ([], "non-empty list"),
        ({"kind": "blur"}, "non-empty list"),
        ([{"kernel_size": 3}], "part 0 spec lacks 'kind'"),
        ([{"kind": "cs-gaussian", "ratio": 0.5}, {"kind": "blur"}], r"part 0 \(cs-gaussian\) returns measurements of shape \(32,\), not images"),
        ([{"kind": "superres", "factor": 2}, {"kind": "blur", "img_shape": [1, 8, 8]}], r"part 1 \(blur\) spec declares img_shape \(1, 8, 8\), but gets \(1, 4, 4\)"),
        ([{"kind": "blur", "kernal_size": 3}], r"invalid parameters in part 0 \('blur'\) spec"),
        ([{"kind": "blurr"}], "unknown operator 'blurr'"),
        (["blur"], "part 0 is neither an operator nor an operator spec"),
    ],
)
def test_composed_errors(parts, match):
    with pytest.raises(BadInput, match=match):  # OperatorError, or UnknownName for the kind
        build("composed", (1, 8, 8), parts=parts)


def test_compose_errors():
    with pytest.raises(OperatorError, match="needs at least one operator"):
        compose()
    with pytest.raises(OperatorError, match="argument 1 is not a LinearOperator"):
        compose(build("identity", (1, 8, 8)), "superres")
    with pytest.raises(OperatorError, match=r"part 1 \(identity\) takes images of shape \(1, 8, 8\), but gets \(1, 4, 4\)"):
        compose(build("superres", (1, 8, 8), factor=2), build("identity", (1, 8, 8)))


#: the README's composition example, verbatim (README.md "Operators"); run as written below
README_COMPOSE = '''\
import torch
from recon_core.operators import build, compose, from_spec

blur = build("blur", (3, 64, 64), kernel_size=9)
down = build("superres", (3, 64, 64), factor=4)
A = compose(blur, down)  # blur, then downsample: (N, 3, 64, 64) -> (N, 3, 16, 16)
x = torch.rand(1, 3, 64, 64)
y = A(x)  # an nn.Module: A(x) is A.A(x) = down.A(blur.A(x)); A.to("cuda") moves its buffers
assert torch.equal(from_spec(A.spec()).A(x), y)  # the spec lists the parts' specs
assert torch.equal(A.A_adjoint(y), blur.A_adjoint(down.A_adjoint(y)))
'''


def test_readme_compose_example_runs():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert README_COMPOSE in readme, 'README no longer shows this example as written'
    env = {}
    exec(README_COMPOSE, env)
    assert env["y"].shape == (1, 3, 16, 16)
