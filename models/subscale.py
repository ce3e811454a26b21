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
of a step counter) until group g - 1 has finished step s - 1; group 0 never
waits. No barrier per step, no Python per step.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from torch import nn
from torch.nn import functional as F

from kernels.numba_util import slp_only
from models import wavernn_fused as wf
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


@njit(fastmath=True, error_model="numpy", nogil=True, cache=True)
def _worker(W, wx, P, hop, ctx_w, ctx_b, wctx, Fh, Pp, uniforms, out, G, progress, g, lo, hi):
    """Streams lo..hi of one utterance. P (K, 3H); ctx_w (D, B * win); ctx_b
    (B, D); wctx (D, 3H); G (B, n + Pp + Fh) values, position j at j + Pp."""
    H = wx.shape[1] // 3
    B, D = ctx_b.shape
    n = G.shape[1] - Pp - Fh
    win = Pp + Fh + 1
    K = P.shape[0]
    h = np.zeros((hi - lo, H), np.float32)
    _, hn, gh, gi, y1, lg, cdf = wf._scratch(H, 16)
    window = np.zeros(B * win, np.float32)
    c_prev = np.full(hi - lo, 128, np.int64)
    f_prev = np.zeros(hi - lo, np.int64)
    for s in range(n + (B - 1) * (Fh + 1)):
        if g > 0:
            while _load_acquire(progress, g - 1) < s:
                pass
        for i in range(lo, hi):
            j = s - i * (Fh + 1)
            if j < 0 or j >= n:
                continue
            t = j * B + i
            k = min(t // hop, K - 1)
            wf._interp(P, k, min(k + 1, K - 1), (t % hop) / hop, gi, 3 * H)
            for kk in range(B):
                for d in range(win):
                    window[kk * win + d] = G[kk, j + d] if kk < i else np.float32(0.0)
            for dd in range(D):
                acc = np.float32(0.0)
                for q in range(B * win):
                    acc += ctx_w[dd, q] * window[q]
                acc += ctx_b[i, dd]
                if acc > 0:
                    wf._axpy(acc, wctx[dd], gi, 3 * H)
            s_i = i - lo
            wf._axpy(np.float32(c_prev[s_i]) / np.float32(127.5) - np.float32(1.0), wx[0], gi, 3 * H)
            wf._axpy(np.float32(f_prev[s_i]) / np.float32(127.5) - np.float32(1.0), wx[1], gi, 3 * H)
            c, f = wf._step(W, gi, h[s_i], hn, gh, y1, lg, cdf, wx, uniforms[t, 0], uniforms[t, 1])
            wf._copy(hn, h[s_i], H)
            out[t] = c * 256 + f
            G[i, j + Pp] = np.float32(c * 256 + f - 32768) / np.float32(32768.0)
            c_prev[s_i], f_prev[s_i] = c, f
        _store_release(progress, g, np.int64(s + 1))


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
            _worker(wf._warm_weights(H), np.zeros((3, 3 * H), f32), np.zeros((2, 3 * H), f32), 4,
                    np.zeros((D, B * 3), f32), np.zeros((B, D), f32), np.zeros((D, 3 * H), f32), 1, 1,
                    np.zeros((4, 2)), np.zeros(4, np.int64), np.zeros((B, 4), f32), np.zeros(1, np.int64), 0, 0, B)
        _SUB_READY = True


class FusedSubscale(wf.FusedWaveRNN):
    """The fused sampler of a subscale model; `generate` as FusedWaveRNN's."""

    def __init__(self, model, sparse: bool = True, block=None):
        super().__init__(model, sparse, block)
        cfg = model.config
        ctx = model.ctx_net
        self.ctx_w = np.ascontiguousarray(ctx.linear.weight.detach().float().numpy())
        self.ctx_b = np.ascontiguousarray((ctx.sub_bias + ctx.linear.bias).detach().float().numpy())
        w = model.masked_weight_ih()[:, 3 + cfg.cond_hidden:].detach().float().numpy()
        self.wctx = np.ascontiguousarray(w.T)
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
                _worker(self.W, self.wx, P[b], self.hop, self.ctx_w, self.ctx_b, self.wctx, self.Fh, self.Pp,
                        u[b], flat, G, progress, g, int(groups[g][0]), int(groups[g][-1]) + 1)
            if len(groups) == 1:
                run(0)
            else:
                with ThreadPoolExecutor(len(groups)) as pool:
                    list(pool.map(run, range(len(groups))))
            out[b, : n * self.B] = flat
        return out
