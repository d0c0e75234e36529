"""The fast schedule: batched L-BFGS with a per-restart backtracking line search, restart pruning
and stopping rules that never look at the ground truth.

Why not ``torch.optim.LBFGS(line_search_fn="strong_wolfe")``: it keeps one history and one step
size for all parameters, which would couple restarts that run as one batch (and it cannot drop a
losing restart from the batch). Here each restart (row) has its own curvature history, its own
Armijo backtracking step, and its own stopping rule; rows that stop leave the batch, so later
generator evaluations get cheaper.

Stopping, per restart, checked after every accepted iteration:
- ``noise``: the measurement loss reached the expected noise energy m sigma^2 (the discrepancy
  principle; only when the noise level is known);
- ``converged``: the loss fell by less than ``stop_tol`` (relative) over the last ``window``
  iterations;
- ``pruned``: after ``prune_after`` of the budget, every restart but the one with the lowest loss
  (of its group, when the rows hold several problems) leaves the batch;
- ``line_search``: no step along the direction decreased the loss (a stationary point);
- ``budget``: ``max_evals`` batched evaluations were spent;
- ``diverged``: the loss was not finite at the start.

Low precision first (``coarse_fn``, ``coarse_evals``): each group's evaluations use ``coarse_fn``
(the same loss computed more cheaply, e.g. with a bfloat16 copy of the generator) until the first
iteration that starts after ``coarse_evals`` of them (a line search under way finishes on the
loss it started with), the rest ``loss_fn``. At the switch every row's best iterate is re-scored and the
running rows re-evaluated with ``loss_fn`` (their curvature histories are kept), so restarts are
selected and the result returned on ``loss_fn`` alone. A coarse row that would stop as
``converged`` or ``line_search`` (progress below the coarse loss's resolution) switches its
group to ``loss_fn`` early instead.
"""

from __future__ import annotations

import math
from typing import Callable, List, Optional

import torch

from ..errors import BadInput, is_int
from ..events import Event, EventSink, null_sink
from .common import _flat, _split, _unflat, check_fast_settings

STOP_REASONS = ("noise", "converged", "pruned", "line_search", "budget", "diverged")


def _two_loop(g: torch.Tensor, mem: list, h_diag: torch.Tensor) -> torch.Tensor:
    """L-BFGS direction -H g for rows g (A, D) from their histories mem [(s, y, rho)] (A, D)."""
    q = -g
    al = []
    for s, y, rho in reversed(mem):
        a = rho * (s * q).sum(1)
        q = q - a.unsqueeze(1) * y
        al.append(a)
    z = q * h_diag.unsqueeze(1)
    for (s, y, rho), a in zip(mem, reversed(al)):
        z = z + s * (a - rho * (y * z).sum(1)).unsqueeze(1)
    return z


def minimise_ls(
    loss_fn: Callable,
    init,
    *,
    max_evals: int,
    history: int = 10,
    prune_after: float = 0.3,
    stop_tol: float = 1e-3,
    window: int = 5,
    noise_floor: float = 0.0,
    c1: float = 1e-4,
    max_backtracks: int = 12,
    phase: str = "",
    on_event: EventSink = null_sink,
    with_rows: bool = False,
    groups: int = 1,
    project: Optional[Callable] = None,
    coarse_fn: Optional[Callable] = None,
    coarse_evals: int = 0,
) -> tuple:
    """Minimise ``loss_fn(state)`` over every entry of ``init`` (R restarts as rows).

    ``loss_fn`` takes a state whose rows are any subset of the restarts (the measurements must
    broadcast: y of batch 1) and returns the per-row loss (R',), or (total, measurement) when the
    minimised loss differs from the one restarts are selected on. max_evals: budget of batched
    loss evaluations (each one generator forward + backward on the rows still running) of each
    group (an evaluation counts for the groups whose rows it includes);
    noise_floor: stop a restart once its measurement loss is <= this (0 = off; a float, or one
    per row). with_rows: call ``loss_fn(state, rows)`` with the restart indices (LongTensor) of
    the state's rows, for losses with per-restart constants (a decoder's fixed input, one
    problem's measurements per group of rows). groups: the rows are ``groups`` equal consecutive
    groups (one per problem of a batch); pruning keeps the best row of each group.
    project: ``project(state, rows) -> state`` maps trial points back onto a feasible set
    (ILO's l1 balls): each trial point is P(x + t d), accepted on the Armijo condition along
    that projected path (f <= f(x) + c1 g.(P(x + t d) - x)), and the curvature pair is taken
    from the projected step (a projected quasi-Newton heuristic, not L-BFGS-B).
    coarse_fn, coarse_evals: see the module docstring (coarse_evals 0 = off).
    Returns (best_state, best_losses (R,) float64 NaN for diverged, history [{"step", "loss"}],
    diverged indices, info {"evaluations" (batched), "stops": per-restart reason,
    "group_evaluations": the evaluations each group took part in, "group_history": each group's
    history, as its problem alone would have it, "coarse_evaluations": each group's evaluations
    with ``coarse_fn``})."""
    for name, v in (("max_evals", max_evals), ("history", history), ("window", window)):
        if not (is_int(v) and v >= 1):
            raise BadInput(f"{name} must be a positive integer, got {v}")
    check_fast_settings(prune_after, stop_tol)
    x = _flat(init).detach().clone()
    R, D = x.shape
    evals = 0

    if not (is_int(groups) and groups >= 1 and R % groups == 0):
        raise BadInput(f"groups must divide the {R} rows, got {groups}")
    if not (is_int(coarse_evals) and 0 <= coarse_evals < max_evals):
        raise BadInput(f"coarse_evals must be an integer from 0 to max_evals - 1 ({max_evals - 1}), got {coarse_evals}")
    floor = torch.as_tensor(noise_floor, dtype=torch.float64).expand(R).clone()
    # the budget, pruning and the counts are per group (problem), so a problem solved in a batch
    # takes the same iterates as alone: a group counts only the evaluations that include it
    per = R // groups
    gid = torch.arange(R) // per
    count = torch.zeros(groups, dtype=torch.long)
    pruned = torch.full((groups,), prune_after == 0)
    # groups still evaluated with coarse_fn, and the groups whose rows asked to switch early
    low = torch.full((groups,), coarse_fn is not None and coarse_evals > 0)
    switch_early = torch.zeros(groups, dtype=torch.bool)
    coarse_count = torch.zeros(groups, dtype=torch.long)

    def call(fn: Callable, xs: torch.Tensor, rows: torch.Tensor) -> tuple:
        st = _unflat(xs, init)
        return _split(fn(st, rows) if with_rows else fn(st))

    def evaluate(xs: torch.Tensor, rows: torch.Tensor) -> tuple:
        nonlocal evals
        evals += 1
        rows_cpu = rows.cpu()
        count[torch.unique(gid[rows_cpu]) if groups > 1 else 0] += 1
        xs = xs.detach().requires_grad_(True)
        lo = low[gid[rows_cpu]]
        if not bool(lo.any()):
            total, meas = call(loss_fn, xs, rows)
        elif bool(lo.all()):
            total, meas = call(coarse_fn, xs, rows)
        else:  # groups of a batch switched at different times: each part with its own loss
            parts = [lo.nonzero().flatten().to(xs.device), (~lo).nonzero().flatten().to(xs.device)]
            (t1, m1), (t2, m2) = call(coarse_fn, xs[parts[0]], rows[parts[0]]), call(loss_fn, xs[parts[1]], rows[parts[1]])
            order = torch.cat(parts).argsort()
            total, meas = torch.cat([t1, t2])[order], torch.cat([m1, m2])[order]
        ok = torch.isfinite(total.detach())
        (g,) = torch.autograd.grad(total[ok].sum() if bool(ok.any()) else total.sum() * 0, xs)
        f = torch.where(ok, total.detach(), torch.full_like(total.detach(), float("inf")))
        return f, meas.detach().to(torch.float64), g.nan_to_num(0.0, 0.0, 0.0)

    f, meas, g = evaluate(x, torch.arange(R, device=x.device))
    best_loss = torch.where(torch.isfinite(meas), meas, torch.full_like(meas, float("inf"))).cpu()
    best_x = x.clone()
    stops: List[str] = ["" for _ in range(R)]
    active = torch.isfinite(f).cpu()
    for i in (~active).nonzero().flatten().tolist():
        stops[i] = "diverged"
    if bool((floor > 0).any()):
        for i in (active & (floor > 0) & (best_loss <= floor)).nonzero().flatten().tolist():
            active[i] = False
            stops[i] = "noise"
    # Rows that stop never restart, so the per-row iterates, gradients and curvature histories are
    # kept only for the running rows (``live``: their restart indices), compacted whenever rows
    # stop: after pruning, every later iteration works on one row without gathering from R.
    live = torch.arange(R)
    mem: list = []  # [(s (L, D), y (L, D), rho (L,))], zero rows for restarts that took no pair
    h_diag = torch.ones(R, dtype=x.dtype, device=x.device)
    started = torch.zeros(R, dtype=torch.bool)
    f_all = f.detach().cpu().clone()  # every restart's current loss and measurement loss
    m_all = meas.cpu().clone()
    f_hist = [f_all.clone()]
    hist: List[dict] = []
    group_hist: List[List[dict]] = [[] for _ in range(groups)]

    def stop(rows, reason: str) -> None:
        for i in rows:
            if active[i]:
                if reason in ("converged", "line_search") and low[gid[i]]:
                    switch_early[gid[i]] = True  # below coarse_fn's resolution: go on with loss_fn
                    continue
                active[i] = False
                stops[i] = reason

    # the first f_hist entry each row's convergence window may look back to (moved at the switch)
    since = torch.zeros(R, dtype=torch.long)

    def rescore(sw: torch.Tensor) -> None:
        # every row of the groups ``sw`` that has a best iterate: its measurement loss by loss_fn
        idx = (sw[gid] & torch.isfinite(best_loss)).nonzero().flatten()
        if len(idx):
            with torch.no_grad():
                _, m = call(loss_fn, best_x[idx.to(x.device)], idx.to(x.device))
            m = m.detach().cpu().to(best_loss.dtype)
            best_loss[idx] = torch.where(torch.isfinite(m), m, torch.full_like(m, float("inf")))
        coarse_count[sw] = count[sw]
        low[sw] = False

    while True:
        stop(live[count[gid[live]] >= max_evals].tolist(), "budget")
        running = active[live]
        if not bool(running.all()):
            k = running.nonzero().flatten()
            kd = k.to(x.device)
            live, started = live[k], started[k]
            x, f, meas, g, h_diag = x[kd], f[kd], meas[kd], g[kd], h_diag[kd]
            mem = [(s[kd], y[kd], r[kd]) for s, y, r in mem]
        if len(live) == 0:
            break
        sw = low & ((count >= coarse_evals) | switch_early)
        if bool(sw.any()):
            rescore(sw)
            li = sw[gid[live]].nonzero().flatten()
            if len(li) == 0:  # those groups' rows had all stopped
                continue
            lid = li.to(x.device)
            f[lid], meas[lid], g[lid] = evaluate(x[lid], live.to(x.device)[lid])
            rows = live[li]
            f_all[rows], m_all[rows] = f[lid].detach().cpu(), meas[lid].cpu()
            f_hist[-1][rows] = f_all[rows]
            since[rows] = len(f_hist) - 1
            better = torch.isfinite(m_all[rows]) & (m_all[rows] < best_loss[rows])
            best_loss[rows[better]] = m_all[rows[better]]
            best_x[rows[better].to(x.device)] = x[lid[better.to(x.device)]]
            stop(rows[~torch.isfinite(f_all[rows])].tolist(), "diverged")
            continue  # compact the rows that diverged, then step
        a, ad = live, live.to(x.device)
        d = _two_loop(g, mem, h_diag)
        gd = (g * d).sum(1)
        bad = ~(gd < 0)  # not a descent direction (numerical trouble): fall back to -g
        if bool(bad.any()):
            d[bad] = -g[bad]
            gd[bad] = -(g[bad] ** 2).sum(1)
        # a restart's first step is scaled like torch's LBFGS, later ones start from 1
        if bool(started.all()):
            t = torch.ones_like(gd)
        else:
            t = torch.where(started.to(x.device), torch.ones_like(gd), (1.0 / g.abs().sum(1).clamp_min(1e-30)).clamp(max=1.0))
        todo = torch.ones(len(a), dtype=torch.bool, device=x.device)
        f_new = None  # the trial values, made on the first rejection (see below)
        spent = torch.zeros_like(todo)
        for bt in range(max_backtracks):
            # the first trial takes every row: views of the whole tensors instead of gathered
            # copies (same values)
            ii = todo.nonzero().flatten() if bt else slice(None)
            trial = x[ii] + t[ii].unsqueeze(1) * d[ii]
            if project is not None:
                trial = _flat(project(_unflat(trial, init), ad[ii]))
            dx = trial - x[ii]
            ft, mt, gt = evaluate(trial, ad[ii])
            ok = torch.isfinite(ft) & (ft <= f[ii] + c1 * (g[ii] * dx).sum(1).clamp(max=0))
            if not bt and bool(ok.all()):
                # the usual case: every row accepts its first trial; its values are the new ones
                # as they are (what the masked copies below would give, bit for bit)
                f_new, m_new, g_new, step = ft, mt, gt, dx
                todo.zero_()
                break
            if f_new is None:
                f_new, m_new, g_new, step = f.clone(), meas.clone(), g.clone(), torch.zeros_like(g)
            acc = ii[ok] if bt else ok.nonzero().flatten()
            f_new[acc], m_new[acc], g_new[acc], step[acc] = ft[ok], mt[ok], gt[ok], dx[ok]
            todo[acc] = False
            out = todo & (count[gid[a]] >= max_evals).to(todo.device)  # their problem's budget is spent
            todo &= ~out
            spent[out] = True
            if not bool(todo.any()):
                break
            t[todo] *= 0.5 if bt else 0.1  # a rejected unit step is usually far too long
        if f_new is None:  # max_backtracks = 0: no trial
            f_new, m_new, g_new, step = f.clone(), meas.clone(), g.clone(), torch.zeros_like(g)
        acc = ~todo & ~spent
        every = bool(acc.all())  # every row took a step: whole tensors, no masked copies
        if every:
            s, yv = step, g_new - g
        else:
            s = torch.zeros_like(x)
            yv = torch.zeros_like(x)
            s[acc] = step[acc]
            yv[acc] = g_new[acc] - g[acc]
        ys = (s * yv).sum(1)
        take = ys > 1e-10
        rho = torch.where(take, 1.0 / torch.where(take, ys, torch.ones_like(ys)), torch.zeros_like(ys))
        h_diag = torch.where(take, ys / (yv * yv).sum(1).clamp_min(1e-30), h_diag)
        if bool(take.any()):
            if len(mem) == history:
                mem.pop(0)
            mem.append((s, yv, rho))
        if every:
            x += s
            f, meas, g = f_new, m_new, g_new
            started.fill_(True)
        else:
            x[acc] += s[acc]
            f[acc], meas[acc], g[acc] = f_new[acc], m_new[acc], g_new[acc]
            started[acc.cpu()] = True
        m_cpu = meas.cpu()
        m_all[a] = m_cpu
        better = (m_cpu < best_loss[a]) & torch.isfinite(m_cpu)  # only rows that took a step can improve
        if bool(better.any()):
            best_loss[a[better]] = m_cpu[better]
            best_x[ad[better.to(x.device)]] = x[better.to(x.device)]
        stop(a[todo.cpu()].tolist(), "line_search")
        stop(a[spent.cpu()].tolist(), "budget")
        f_all[a] = f.detach().cpu()
        f_hist.append(f_all.clone())
        if bool((floor > 0).any()):
            stop((active & (floor > 0) & (m_all <= floor)).nonzero().flatten().tolist(), "noise")
        if stop_tol > 0 and len(f_hist) > window:
            old = f_hist[-1 - window]
            ready = since <= len(f_hist) - 1 - window
            stop((active & ready & ((old - f_all) <= stop_tol * old.abs())).nonzero().flatten().tolist(), "converged")
        for j in (~pruned & (count >= prune_after * max_evals)).nonzero().flatten().tolist():
            pruned[j] = True
            run = active[j * per : (j + 1) * per].nonzero().flatten() + j * per
            if len(run) > 1:
                keep = int(run[f_all[run].argmin()])
                stop([int(i) for i in run if int(i) != keep], "pruned")
        ok = best_loss[torch.isfinite(best_loss)]
        cur = float(ok.min()) if ok.numel() else float("nan")
        hist.append({"step": evals, "loss": cur})
        fin = torch.where(torch.isfinite(best_loss), best_loss, torch.full_like(best_loss, float("inf")))
        for j in torch.unique(gid[a]).tolist() if groups > 1 else [0]:  # the groups that took part in this iteration
            v = float(fin[j * per : (j + 1) * per].min())
            group_hist[j].append({"step": int(count[j]), "loss": v if math.isfinite(v) else float("nan")})
        on_event(Event(phase=phase, step=min(evals, max_evals), total=max_evals, loss=cur,
                       extra={"running": int(active.sum())}))
    if bool(low.any()):  # groups that stopped before the switch: select on loss_fn too
        rescore(low.clone())
    diverged = [i for i in range(R) if stops[i] == "diverged" or not math.isfinite(float(best_loss[i]))]
    best_loss[diverged] = float("nan")
    return _unflat(best_x, init), best_loss, hist, diverged, {"evaluations": evals, "stops": stops,
                                                             "group_evaluations": count.tolist(), "group_history": group_hist,
                                                             "coarse_evaluations": coarse_count.tolist()}
