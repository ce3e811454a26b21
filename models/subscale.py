"""Subscale WaveRNN (Kalchbrenner et al. 2018, section 5).

A crop of L = n B samples is folded into B sub-tensors by interleaving:
sample t = j B + i is position j of sub-tensor i (`fold`, undone by
`unfold`). Sub-tensor i is generated after the sub-tensors before it and
sees them from P positions in its past to F positions in its future (the
future horizon). Position j of sub-tensor i is made at step
s = j + i (F + 1): sub-tensors k < i then hold positions up to j + F, all
made at steps before s, so after a ramp of (B - 1)(F + 1) steps the B
sub-tensors advance together, B samples per step as a batch.

The conditioning of (i, j): the frame features at time t (as in plain
WaveRNN) and the context net, which sees the window of earlier sub-tensors,
values of sub-tensors k < i at positions j - P .. j + F (zeros elsewhere),
(B, P + F + 1) flattened -> linear + a bias per sub-tensor -> relu ->
ctx_hidden features that enter the gates through extra input columns. The
sub-tensor's own past enters as x = [c, f of position j - 1, c of j] and
through the recurrent state (one GRU, B sequences of n steps).

The fused sampler splits the B streams into contiguous groups, one thread
each. Group g only reads what groups < g wrote, so it waits (an acquire load
of a step counter) until group g - 1 has finished what it reads; group 0
never waits. No barrier per step, no Python per step. Within a group the
streams advance together: each matrix is applied once per step to all of
them (models/wavernn_tile.py: each weight block loaded once for 8 streams).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from torch import nn
from torch.nn import functional as F

from kernels.cpu import spmv_into
from kernels.numba_util import slp_only
from models import wavernn_fused as wf
from models.wavernn_tile import tile16x8
from models.features import scale_byte


def fold(x: torch.Tensor, B: int) -> torch.Tensor:
    """(..., L) -> (..., B, L // B): out[..., i, j] = x[..., j * B + i]."""
    if x.shape[-1] % B:
        raise ValueError(f"length {x.shape[-1]} is not a multiple of B = {B}")
    return x.reshape(*x.shape[:-1], x.shape[-1] // B, B).transpose(-1, -2)


def unfold(y: torch.Tensor) -> torch.Tensor:
    """(..., B, n) -> (..., n * B), the inverse of fold."""
    return y.transpose(-1, -2).reshape(*y.shape[:-2], y.shape[-1] * y.shape[-2])


def step_of(i: int, j: int, future: int) -> int:
    """The generation step of position j of sub-tensor i."""
    return j + i * (future + 1)


def n_steps(n: int, B: int, future: int) -> int:
    return n + (B - 1) * (future + 1)


def windows(values: torch.Tensor, past: int, future: int) -> torch.Tensor:
    """(Bb, B, n) sample values -> (Bb, B, n, B * (past + future + 1)) context
    inputs: for target sub-tensor i at j, values of k < i at j - past .. j + future."""
    Bb, B, n = values.shape
    padded = F.pad(values, (past, future))
    win = padded.unfold(-1, past + future + 1, 1)  # (Bb, B_k, n, W)
    mask = torch.tril(torch.ones(B, B, dtype=values.dtype), diagonal=-1)  # [i, k] = k < i
    out = win[:, None] * mask[None, :, :, None, None]  # (Bb, B_i, B_k, n, W)
    return out.permute(0, 1, 3, 2, 4).reshape(Bb, B, n, -1)


class ContextNet(nn.Module):
    """Window of earlier sub-tensors -> (..., ctx_hidden), per sub-tensor bias."""

    def __init__(self, config):
        super().__init__()
        B, W = config.subscale, config.subscale_past + config.subscale_future + 1
        self.linear = nn.Linear(B * W, config.ctx_hidden)
        self.sub_bias = nn.Parameter(torch.zeros(B, config.ctx_hidden))

    def forward(self, window: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        # window (N, B * W), index (N,) sub-tensor of each row -> (N, ctx_hidden)
        return F.relu(self.linear(window) + self.sub_bias[index])


def _values(u: torch.Tensor) -> torch.Tensor:
    return (u.float() - 32768.0) / 32768.0


def subscale_forward(model, samples, cond, speaker, cond_offset: int = 0):
    """Teacher forcing over sub-tensors; same contract as WaveRNN.forward
    (samples[:, 0] is ignored: every sub-tensor starts from silence)."""
    from models.wavernn import split_samples, upsample_frames

    cfg = model.config
    B, H = cfg.subscale, cfg.hidden_size
    u = samples[:, 1:]
    Bb, L = u.shape
    folded = fold(u, B)  # (Bb, B, n)
    n = folded.shape[-1]
    prev = torch.cat([torch.full_like(folded[..., :1], 32768), folded[..., :-1]], -1)
    c, f = split_samples(folded)
    cp, fp = split_samples(prev)
    x = torch.stack([scale_byte(cp), scale_byte(fp), scale_byte(c)], -1)  # (Bb, B, n, 3)
    hidden = upsample_frames(model.cond_net(cond, speaker)[:, cond_offset:], cfg.hop_length, L)
    hidden = fold(hidden.transpose(1, 2), B).permute(0, 2, 3, 1)  # (Bb, B, n, ch)
    win = windows(_values(folded), cfg.subscale_past, cfg.subscale_future)
    index = torch.arange(B).repeat_interleave(n).repeat(Bb)
    ctx = model.ctx_net(win.reshape(Bb * B * n, -1), index).reshape(Bb, B, n, -1)
    inp = torch.cat([x, hidden, ctx], -1).reshape(Bb * B, n, -1)
    h0 = torch.zeros(1, Bb * B, H, dtype=inp.dtype, device=inp.device)
    weights = [model.masked_weight_ih(), model.weight_hh, model.bias_ih, model.bias_hh]
    out, _ = torch._VF.gru(inp, h0, weights, True, 1, 0.0, model.training, False, True)
    y_c, y_f = out[..., : H // 2], out[..., H // 2:]
    lc, lf = model.o2(F.relu(model.o1(y_c))), model.o4(F.relu(model.o3(y_f)))

    def to_time(logits):  # (Bb * B, n, 256) -> (Bb, L, 256)
        return unfold(logits.reshape(Bb, B, n, -1).permute(0, 3, 1, 2)).transpose(1, 2)
    return to_time(lc), to_time(lf)


@torch.no_grad()
def subscale_generate(model, cond, speaker, uniforms) -> torch.Tensor:
    """Reference subscale sampler in torch: (Bb, K, C), (Bb,), (Bb, L, 2) -> (Bb, L)."""
    cfg = model.config
    B, Fh, P, H, hop, ch = (cfg.subscale, cfg.subscale_future, cfg.subscale_past, cfg.hidden_size,
                            cfg.hop_length, cfg.cond_hidden)
    Bb, L = uniforms.shape[:2]
    n = L // B
    frames = model.cond_frames(cond, speaker).float()
    K = frames.shape[1]
    w_ctx = model.masked_weight_ih()[:, 3 + ch:].float()  # (3H, D)
    G = torch.zeros(Bb, B, n + P + Fh)  # values, padded: position j at j + P
    out = torch.zeros(Bb, B, n, dtype=torch.long)
    h = torch.zeros(Bb, B, H)
    c_prev = torch.full((Bb, B), 128, dtype=torch.long)
    f_prev = torch.zeros(Bb, B, dtype=torch.long)
    below = torch.tril(torch.ones(B, B), diagonal=-1)
    for s in range(n_steps(n, B, Fh)):
        active = [i for i in range(B) if 0 <= s - i * (Fh + 1) < n]
        gis, wins = [], []
        for i in active:
            j = s - i * (Fh + 1)
            t = j * B + i
            k, a = min(t // hop, K - 1), (t % hop) / hop
            gis.append((1 - a) * frames[:, k] + a * frames[:, min(k + 1, K - 1)])
            wins.append((G[:, :, j: j + P + Fh + 1] * below[i][None, :, None]).reshape(Bb, -1))
        idx = torch.tensor(active)
        ctx = model.ctx_net(torch.stack(wins, 1).reshape(-1, wins[0].shape[-1]), idx.repeat(Bb))
        gi = torch.stack(gis, 1).reshape(-1, 3 * H) + ctx @ w_ctx.T
        ts = torch.tensor([(s - i * (Fh + 1)) * B + i for i in active])
        hh, c, f = model.torch_step(h[:, idx].reshape(-1, H), gi, c_prev[:, idx].reshape(-1),
                                    f_prev[:, idx].reshape(-1), uniforms[:, ts].reshape(-1, 2))
        h[:, idx] = hh.reshape(Bb, len(active), H)
        c, f = c.reshape(Bb, -1), f.reshape(Bb, -1)
        c_prev[:, idx], f_prev[:, idx] = c, f
        for a, i in enumerate(active):
            j = s - i * (Fh + 1)
            out[:, i, j] = c[:, a] * 256 + f[:, a]
            G[:, i, j + P] = _values(out[:, i, j])
    return unfold(out)


# --- the fused subscale sampler ------------------------------------------------------
@intrinsic
def _sched_yield(typingctx):
    """libc's sched_yield(), by name (a ctypes pointer would stop numba's disk cache)."""
    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def _load_acquire(typingctx, arr, idx):
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, sig.args[0], ary, [args[1]])
        return builder.load_atomic(ptr, "acquire", 8)
    return types.int64(arr, idx), codegen


@intrinsic
def _store_release(typingctx, arr, idx, val):
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, sig.args[0], ary, [args[1]])
        builder.store_atomic(args[2], ptr, "release", 8)
        return context.get_dummy_value()
    return types.void(arr, idx, val), codegen


TILE = 8  # streams per register tile (models/wavernn_tile.py)
LAG = 128  # schedule steps a thread's group may run ahead of the group before (see _worker)


@njit(cache=True)
def _pad16(n):
    return (n + 15) // 16 * 16


@njit(fastmath=True, error_model="numpy", nogil=True, cache=True)
def _mm(m, X, Y, r0, r1):
    """Y[r] = S X[r] for the rows r0..r1 of a stream batch (rows rounded out
    to whole tiles: X and Y have a multiple of TILE rows; extra rows are
    computed and ignored). 16x1 blocks share each weight load over TILE
    streams; other blocks run one SpMV per stream."""
    values, col_idx, row_ptr, br, bc = m
    if br == 16 and bc == 1:
        for t in range(r0 // TILE * TILE, r1, TILE):
            tile16x8(values, col_idx, row_ptr, X, Y, t)
    else:
        for r in range(r0, r1):
            spmv_into(values, col_idx, row_ptr, br, bc, X[r], Y[r])


@njit(fastmath=True, error_model="numpy", nogil=True, cache=True)
def _logits(Oa, ba, Ob, X, Y1, LG, r0, r1, half):
    """LG[r] = Ob relu(Oa X[r] + ba) for the rows r0..r1 (Ob's bias is
    added by sample_byte)."""
    _mm(Oa, X, Y1, r0, r1)
    for r in range(r0, r1):
        wf._bias_relu(Y1[r], ba, half)
    _mm(Ob, Y1, LG, r0, r1)


@njit(fastmath=True, error_model="numpy", nogil=True, cache=True)
def _ctx_inputs(ctx_wt, ctx_b, G, i, j, win, x):
    """x[2:] = relu(context net) of sub-tensor i at position j: earlier
    sub-tensors k < i at G[k, j .. j + win) (G is padded by Pp in front);
    ctx_wt (B * win, D), the linear layer transposed, so that the inner loop
    runs over the D outputs (one vector FMA per input value)."""
    D = ctx_b.shape[1]
    y = x[2:]
    for dd in range(D):
        y[dd] = ctx_b[i, dd]
    for kk in range(i):
        for d in range(win):
            g = G[kk, j + d]
            w = ctx_wt[kk * win + d]
            for dd in range(D):
                y[dd] += w[dd] * g
    for dd in range(D):
        y[dd] = max(y[dd], np.float32(0.0))


@njit(fastmath=True, error_model="numpy", nogil=True, cache=True)
def _worker(W, Win, wx2, P, hop, ctx_wt, ctx_b, Fh, Pp, uniforms, out, G, progress, g, lo, hi, lag):
    """Streams lo..hi of one utterance, advanced together one step at a time.

    P (K, 3H) frame conditioning; Win: the input matrix over [c_{t-1},
    f_{t-1}, context features] (3H, 2 + D), packed dense; wx2 (3H,) the
    column of c_t; ctx_wt (B * win, D), ctx_b (B, D); G (B, n + Pp + Fh)
    values, position j at j + Pp. Each matrix product runs once per step
    over all active streams of the group (`_mm`)."""
    R, b_hh, O1, b1, O2, b2, O3, b3, O4, b4 = W
    H = wx2.shape[0] // 3
    half = H // 2
    B = ctx_b.shape[0]
    n = G.shape[1] - Pp - Fh
    win = Pp + Fh + 1
    K = P.shape[0]
    rows = (hi - lo + TILE - 1) // TILE * TILE
    X = np.zeros((rows, 2 + ctx_b.shape[1]), np.float32)
    Hs = np.zeros((rows, _pad16(H)), np.float32)
    HN = np.zeros((rows, _pad16(H)), np.float32)
    HF = np.zeros((rows, _pad16(half)), np.float32)
    GI = np.zeros((rows, _pad16(3 * H)), np.float32)
    GH = np.zeros((rows, _pad16(3 * H)), np.float32)
    Y1 = np.zeros((rows, _pad16(half)), np.float32)
    LG = np.zeros((rows, 256), np.float32)
    cdf = np.zeros(256)
    c_prev = np.full(rows, 128, np.int64)
    f_prev = np.zeros(rows, np.int64)
    tix = np.zeros(rows, np.int64)
    zero = lo - lo  # not a literal 0 (see wavernn_fused._step)
    # group g runs the subscale schedule `lag` steps later than group g - 1:
    # at its loop step s it makes schedule step s - g lag, which needs group
    # g - 1 to have finished schedule step s - g lag - 1 = its loop step
    # s - lag - 1. So a group may run up to `lag` steps ahead of the one
    # before: when that one is off the CPU, it keeps going for a while.
    for s in range(n + (hi - 1) * (Fh + 1) + g * lag):
        if g > 0:
            spins = 0
            while _load_acquire(progress, g - 1) < s - lag:
                spins += 1
                if spins > 2000:  # the group before is not running (shared cores): give way
                    _sched_yield()
        sg = s - g * lag
        # active sub-tensors: 0 <= j = sg - i (F + 1) < n, a contiguous range
        a0 = max(lo, (sg - n) // (Fh + 1) + 1)
        a1 = min(hi, sg // (Fh + 1) + 1)
        r0, r1 = a0 - lo, a1 - lo
        if r0 >= r1:
            _store_release(progress, g, np.int64(s + 1))
            continue
        for i in range(a0, a1):
            r = i - lo
            tix[r] = (sg - i * (Fh + 1)) * B + i  # the sample made by sub-tensor i at this step
            X[r, 0] = np.float32(c_prev[r]) / np.float32(127.5) - np.float32(1.0)
            X[r, 1] = np.float32(f_prev[r]) / np.float32(127.5) - np.float32(1.0)
            _ctx_inputs(ctx_wt, ctx_b, G, i, sg - i * (Fh + 1), win, X[r])
        _mm(Win, X, GI, r0, r1)
        _mm(R, Hs, GH, r0, r1)
        for r in range(r0, r1):
            t = tix[r]
            k = min(t // hop, K - 1)
            wf._interp_add(P[k], P[min(k + 1, K - 1)], (t % hop) / hop, GI[r], 3 * H)
            wf._add(GH[r], b_hh, 3 * H)
            wf._gates(GI[r], GH[r], Hs[r], HN[r], zero, half, H)
        _logits(O1, b1, O2, HN, Y1, LG, r0, r1, half)
        for r in range(r0, r1):
            c_prev[r] = wf.sample_byte(LG[r], b2, uniforms[tix[r], 0], cdf)
            wf._axpy(np.float32(c_prev[r]) / np.float32(127.5) - np.float32(1.0), wx2, GI[r], 3 * H)
            wf._gates(GI[r], GH[r], Hs[r], HN[r], half, H, H)
            wf._copy(HN[r, half:], HF[r], half)
        _logits(O3, b3, O4, HF, Y1, LG, r0, r1, half)
        for r in range(r0, r1):
            f_prev[r] = wf.sample_byte(LG[r], b4, uniforms[tix[r], 1], cdf)
            wf._copy(HN[r], Hs[r], H)
            t = tix[r]
            out[t] = c_prev[r] * 256 + f_prev[r]
            G[t % B, t // B + Pp] = np.float32(out[t] - 32768) / np.float32(32768.0)
        _store_release(progress, g, np.int64(s + 1))
    _store_release(progress, g, np.int64(1) << np.int64(62))  # done: the next group never waits again


_SUB_READY = False


def _compile() -> None:
    global _SUB_READY
    wf._compile()
    with wf._LOCK:
        if _SUB_READY:
            return
        H, B, D = 32, 2, 2
        f32 = np.float32
        with slp_only():
            W = wf._warm_weights(H)
            _worker(W, W[0], np.zeros(3 * H, f32), np.zeros((2, 3 * H), f32), 4, np.zeros((B * 3, D), f32),
                    np.zeros((B, D), f32), 1, 1, np.zeros((4, 2)), np.zeros(4, np.int64), np.zeros((B, 4), f32),
                    np.zeros(1, np.int64), 0, 0, B, LAG)
        _SUB_READY = True


class FusedSubscale(wf.FusedWaveRNN):
    """The fused sampler of a subscale model; `generate` as FusedWaveRNN's."""

    def __init__(self, model, sparse: bool = True, block=None):
        super().__init__(model, sparse, block)
        cfg = model.config
        ctx = model.ctx_net
        self.ctx_wt = np.ascontiguousarray(ctx.linear.weight.detach().float().numpy().T)
        self.ctx_b = np.ascontiguousarray((ctx.sub_bias + ctx.linear.bias).detach().float().numpy())
        w = model.masked_weight_ih()[:, 3 + cfg.cond_hidden:].detach().float().numpy()  # (3H, D)
        # one dense input matrix over [c_{t-1}, f_{t-1}, context features]
        self.Win = wf.bsr_args(np.concatenate([self.wx[:2].T, w], 1), (16, 1), keep_all=True)
        self.B, self.Fh, self.Pp = cfg.subscale, cfg.subscale_future, cfg.subscale_past

    def run_frames(self, P: np.ndarray, u: np.ndarray, out: np.ndarray, threads: int = 2) -> np.ndarray:
        _compile()
        n = u.shape[1] // self.B
        groups = np.array_split(np.arange(self.B), max(1, min(threads, self.B)))
        for b in range(P.shape[0]):
            G = np.zeros((self.B, n + self.Pp + self.Fh), np.float32)
            progress = np.zeros(len(groups), np.int64)
            flat = np.zeros(n * self.B, np.int64)

            def run(g):
                _worker(self.W, self.Win, self.wx[2], P[b], self.hop, self.ctx_wt, self.ctx_b, self.Fh, self.Pp,
                        u[b], flat, G, progress, g, int(groups[g][0]), int(groups[g][-1]) + 1, LAG)
            if len(groups) == 1:
                run(0)
            else:
                with ThreadPoolExecutor(len(groups)) as pool:
                    list(pool.map(run, range(len(groups))))
            out[b, : n * self.B] = flat
        return out
