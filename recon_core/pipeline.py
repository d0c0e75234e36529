"""One run of recon, shared by the CLI, the benchmarks and Python users (DESIGN.md).

So far: the seed policy and ``simulate`` (one image measured as ``recon reconstruct --seed S``
measures it), and the result identity, a hash of everything that determines a result, which
``recon reconstruct --resume`` compares to decide whether an existing output is still valid.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

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
