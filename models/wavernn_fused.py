"""The fused WaveRNN sampler: the whole autoregressive loop in numba.

One call runs every sample of every stream in compiled code: the recurrent
matrix and the four output matrices are block-sparse (kernels/format.py's
BlockSparseMatrix: `values` (n_blocks, br * bc), `col_idx` of block
columns, `row_ptr` per block row), the gate nonlinearities use a rational
tanh (max abs error 3e-7, vectorized), and each byte is drawn by the same
float64 inverse CDF as the torch reference (models/wavernn.py
`sample_byte`, with float32 exponentials), so equal uniforms give equal
samples. Dense weights use the same code with every block present.

The block products are kernels/cpu.py's `spmv_into`.
Two compile settings matter on x86: the block kernels need LLVM's SLP
vectorizer on and its loop vectorizer off, so that a 16x1 block becomes one
16-lane FMA (the loop vectorizer would vectorize across blocks with gathers
instead), while the elementwise kernels want the default loop vectorizer;
numba re-optimizes linked callees with the caller's settings, so
`_compile()` compiles the elementwise kernels first and then the sampling
loops under kernels.numba_util.slp_only().
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit

from kernels.cpu import spmv_into
from kernels.format import BlockSparseMatrix
from kernels.numba_util import _bits_f32, slp_only, tanh_f32

PACK_SUFFIXES = (".bsr_indptr", ".bsr_indices", ".bsr_values", ".bsr_shape")


# --- packing: kernels/format.py's BlockSparseMatrix ----------------------------------
def bsr_args(dense: np.ndarray, block: tuple[int, int], keep_all: bool = False) -> tuple:
    """(R, C) float -> the kernels' arguments (values (nnzb, br * bc) float32,
    col_idx, row_ptr, br, bc). Blocks that are all zero are dropped unless
    keep_all (the dense path of the same code)."""
    w = torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32))
    return BlockSparseMatrix.from_dense(w, torch.ones_like(w) if keep_all else None, block).numpy_args()


def pack_state(state: dict[str, torch.Tensor], names, block) -> dict[str, torch.Tensor]:
    """A state dict with the named matrices replaced by their BSR arrays
    (bundle keys name.bsr_indptr / indices / values (nnzb, br * bc) / shape)."""
    out = {}
    for name, tensor in state.items():
        if name not in names:
            out[name] = tensor.detach().cpu().contiguous()
            continue
        m = BlockSparseMatrix.from_dense(tensor.detach().float().cpu(), None, block)
        out[name + ".bsr_indptr"] = m.row_ptr
        out[name + ".bsr_indices"] = m.col_idx
        out[name + ".bsr_values"] = m.values.reshape(m.nnz_blocks, -1)
        out[name + ".bsr_shape"] = torch.tensor([*tensor.shape, *block], dtype=torch.int64)
    return out


def unpack_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {k: v for k, v in tensors.items() if not k.endswith(PACK_SUFFIXES)}
    for key in tensors:
        if key.endswith(".bsr_shape"):
            name = key[: -len(".bsr_shape")]
            R, C, br, bc = (int(v) for v in tensors[key])
            m = BlockSparseMatrix(tensors[name + ".bsr_values"].reshape(-1, br, bc), tensors[name + ".bsr_indices"],
                                  tensors[name + ".bsr_indptr"], (R, C), (br, bc))
            out[name] = m.to_dense().contiguous()
    return out


# --- block kernels: kernels/cpu.py (compiled with SLP on, loop vectorizer off) -------
@njit(fastmath=True, error_model="numpy", cache=True)
def bsr_mv(m, x, y):
    """y[:rows padded to br] = W x for m = (values, col_idx, row_ptr, br, bc)."""
    values, col_idx, row_ptr, br, bc = m
    spmv_into(values, col_idx, row_ptr, br, bc, x, y)


# --- elementwise kernels (default loop vectorizer) ---------------------------------
@njit(fastmath=True, error_model="numpy", cache=True)
def _gates(gi, gh, h, out, lo, hi, H):
    """GRU update of state units lo..hi (rows g * H + i of gate g)."""
    half = np.float32(0.5)
    uH, u2H = np.uint64(H), np.uint64(2 * H)
    for j in range(lo, hi):
        i = np.uint64(j)  # unsigned: no wraparound test, so the loop vectorizes
        r = half * tanh_f32(half * (gi[i] + gh[i])) + half
        z = half * tanh_f32(half * (gi[uH + i] + gh[uH + i])) + half
        n = tanh_f32(gi[u2H + i] + r * gh[u2H + i])
        out[i] = (np.float32(1.0) - z) * n + z * h[i]


@njit(fastmath=True, error_model="numpy", cache=True)
def _axpy(a, x, y, n):
    for i in range(n):
        y[i] += a * x[i]


@njit(fastmath=True, error_model="numpy", cache=True)
def _add(y, b, n):
    for i in range(n):
        y[i] += b[i]


@njit(fastmath=True, error_model="numpy", cache=True)
def _copy(src, dst, n):
    for i in range(n):
        dst[i] = src[i]


@njit(fastmath=True, error_model="numpy", cache=True)
def _bias_relu(y, b, n):
    for i in range(n):
        v = y[i] + b[i]
        y[i] = v if v > 0 else np.float32(0.0)


@njit(fastmath=True, error_model="numpy", cache=True)
def _interp(p0, p1, a, gi, n):
    """gi = (1 - a) p0 + a p1 (see _interp_add)."""
    b = np.float32(1.0 - a)
    a32 = np.float32(a)
    for i in range(n):
        gi[i] = b * p0[i] + a32 * p1[i]


@njit(fastmath=True, error_model="numpy", cache=True)
def _interp_add(p0, p1, a, gi, n):
    """gi += (1 - a) p0 + a p1 (rows of the frame conditioning: 2-D indexing
    here kept the loop scalar, 1.3 us against 0.1 us for 3H = 2688)."""
    b = np.float32(1.0 - a)
    a32 = np.float32(a)
    for i in range(n):
        gi[i] += b * p0[i] + a32 * p1[i]


@njit(fastmath=True, error_model="numpy", cache=True)
def exp_f32(x):
    """e^x for x <= 0 (Cephes' expf: |relative error| < 2e-7), clamped at -87
    (below that the terms vanish against a total >= 1); branch-free, so the
    softmax loop vectorizes (numba has no vector exp without SVML)."""
    x = max(x, np.float32(-87.0))
    n = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
    r = x - n * np.float32(0.693359375) + n * np.float32(2.12194440e-4)
    p = np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    return p * _bits_f32(np.uint32(np.int32(n) + np.int32(127)) << np.uint32(23))


@njit(fastmath=True, error_model="numpy", cache=True)
def sample_byte(logits, b, u, cdf):
    """Inverse-CDF draw as models/wavernn.py sample_byte: the first index whose
    cumulative softmax mass exceeds u times the total (float64 sums); the
    exponentials are float32 (exp_f32), which moves the mass by about 1e-7
    relative, as the float32 logits already differ by their summation order.
    cdf is a float64 scratch of 256 (it receives the exponentials)."""
    m = logits[0] + b[0]
    for i in range(1, 256):
        v = logits[i] + b[i]
        m = v if v > m else m
    total = 0.0
    for i in range(256):
        e = np.float64(exp_f32(logits[i] + b[i] - m))
        cdf[i] = e
        total += e
    target = u * total
    acc = 0.0
    for i in range(256):
        acc += cdf[i]
        if acc > target:
            return i
    return 255


# --- one sample of one stream -----------------------------------------------------
@njit(fastmath=True, error_model="numpy", cache=True)
def _step(W, gi, h, hn, gh, y1, lg, cdf, wx, u_c, u_f):
    """Advance one stream by one sample; gi (3H) holds the conditioning and
    c_{t-1}, f_{t-1} terms. Returns (c_t, f_t); hn receives the new state."""
    R, b_hh, O1, b1, O2, b2, O3, b3, O4, b4 = W
    H = h.shape[0]
    half = H // 2
    bsr_mv(R, h, gh)
    _add(gh, b_hh, 3 * H)
    _gates(gi, gh, h, hn, half - half, half, H)  # not a literal 0: that would compile a scalar twin
    bsr_mv(O1, hn, y1)
    _bias_relu(y1, b1, half)
    bsr_mv(O2, y1, lg)
    c = sample_byte(lg, b2, u_c, cdf)
    _axpy(np.float32(c) / np.float32(127.5) - np.float32(1.0), wx[2], gi, 3 * H)
    _gates(gi, gh, h, hn, half, H, H)
    bsr_mv(O3, hn[half:], y1)
    _bias_relu(y1, b3, half)
    bsr_mv(O4, y1, lg)
    f = sample_byte(lg, b4, u_f, cdf)
    return c, f


@njit(fastmath=True, error_model="numpy", cache=True)
def _scratch(H, pad):
    return (np.zeros(H, np.float32), np.zeros(H + pad, np.float32), np.zeros(3 * H + pad, np.float32),
            np.zeros(3 * H, np.float32), np.zeros(H // 2 + pad, np.float32), np.zeros(256 + pad, np.float32),
            np.zeros(256))


@njit(fastmath=True, error_model="numpy", nogil=True, cache=True)
def _run_segment(W, wx, P, hop, uniforms, out, t0, state, prev):
    """Samples t0 .. t0 + len(out) of one stream: P (K, 3H) conditioning at
    frame rate, uniforms (n, 2) -> out (n,). state (H,) and prev (2,) (the last
    coarse and fine bytes) carry the recurrence from one segment to the next."""
    H = wx.shape[1] // 3
    h, hn, gh, gi, y1, lg, cdf = _scratch(H, 16)
    h[:] = state
    K = P.shape[0]
    c_prev, f_prev = prev[0], prev[1]
    for i in range(out.shape[0]):
        t = t0 + i
        k = min(t // hop, K - 1)
        _interp(P[k], P[min(k + 1, K - 1)], (t % hop) / hop, gi, 3 * H)
        _axpy(np.float32(c_prev) / np.float32(127.5) - np.float32(1.0), wx[0], gi, 3 * H)
        _axpy(np.float32(f_prev) / np.float32(127.5) - np.float32(1.0), wx[1], gi, 3 * H)
        c, f = _step(W, gi, h, hn, gh, y1, lg, cdf, wx, uniforms[i, 0], uniforms[i, 1])
        _copy(hn, h, H)
        out[i] = c * 256 + f
        c_prev, f_prev = c, f
    state[:] = h
    prev[0], prev[1] = c_prev, f_prev


@njit(fastmath=True, error_model="numpy", nogil=True, cache=True)
def _run_stream(W, wx, P, hop, uniforms, out):
    """One whole stream: P (K, 3H), uniforms (T, 2) -> out (T,)."""
    state = np.zeros(wx.shape[1] // 3, np.float32)
    prev = np.array([128, 0], np.int64)
    _run_segment(W, wx, P, hop, uniforms, out, 0, state, prev)


_LOCK = threading.Lock()
_READY = False


def _compile() -> None:
    """Compile the kernels in the order their settings need (see the docstring)."""
    global _READY
    with _LOCK:
        if _READY:
            return
        H = 32
        f32 = np.float32
        v = np.zeros(3 * H + 16, f32)
        _gates(v, v, v, v, H - H, 1, H)
        _axpy(f32(1.0), v, v, 1)
        _add(v, v, 1)
        _copy(v, v, 1)
        _bias_relu(v, v, 1)
        _interp(v, v, 0.5, v, 1)
        _interp_add(v, v, 0.5, v, 1)
        sample_byte(np.zeros(256, f32), np.zeros(256, f32), 0.5, np.zeros(256))
        _conv_frames(np.zeros((2, 2), f32), np.zeros((1, 2, 2), f32), np.zeros(2, f32), True, np.zeros((2, 2), f32))
        with slp_only():
            W = _warm_weights(H)
            wx = np.zeros((3, 3 * H), f32)
            _run_stream(W, wx, np.zeros((2, 3 * H), f32), 4, np.zeros((3, 2)), np.zeros(3, np.int64))
        _READY = True


def _warm_weights(H: int):
    """Tiny weights of the types the real ones have, one matrix per block kind."""
    def mat(R, C, block):
        return bsr_args(np.zeros((R, C), np.float32), block, keep_all=True)
    z = np.zeros
    blocks = [(16, 1), (4, 4), (2, 2)]
    return (
        mat(3 * H, H, blocks[0]), z(3 * H, np.float32), mat(H // 2, H // 2, blocks[1]), z(H // 2, np.float32),
        mat(256, H // 2, blocks[2]), z(256, np.float32), mat(H // 2, H // 2, blocks[0]), z(H // 2, np.float32),
        mat(256, H // 2, blocks[0]), z(256, np.float32))


# --- the conditioning net in numba (the request path: no torch threads) ---------------
@njit(fastmath=True, error_model="numpy", nogil=True, cache=True)
def _conv_frames(x, w, b, relu, out):
    """out (K, Cout) = conv1d of x (K, Cin) with w (k, Cin, Cout), zero
    padding k // 2, bias b (Cout,), then relu if asked (k = 1: a linear layer)."""
    K, Cin = x.shape
    k, Cout = w.shape[0], w.shape[2]
    for t in range(K):
        o = out[t]
        for co in range(Cout):
            o[co] = b[co]
        for d in range(k):
            src = t + d - k // 2
            if src < 0 or src >= K:
                continue
            for c in range(Cin):
                v = x[src, c]
                wc = w[d, c]
                for co in range(Cout):
                    o[co] += v * wc[co]
        if relu:
            for co in range(Cout):
                o[co] = max(o[co], np.float32(0.0))


class CondFrames:
    """WaveRNN.cond_frames (frame features + speaker -> gate space, (K, 3H))
    in numba on the calling thread. torch ran it on its shared OpenMP threads:
    on 2 busy cores that took 170-230 ms for a short sentence, most of the
    wait for the first streamed chunk."""

    def __init__(self, model):
        net = model.cond_net
        self.speakers = net.speaker.weight.detach().float().numpy()
        convs = [m for m in net.net if isinstance(m, torch.nn.Conv1d)]
        # (Cout, Cin, k) -> (k, Cin, Cout): the inner loop runs over outputs
        self.layers = [(np.ascontiguousarray(c.weight.detach().float().numpy().transpose(2, 1, 0)),
                        c.bias.detach().float().numpy().copy()) for c in convs]
        self.reach = sum(w.shape[0] // 2 for w, _ in self.layers)  # frames each side an output row sees
        ch = model.config.cond_hidden
        proj = model.masked_weight_ih()[:, 3: 3 + ch].detach().float().numpy()  # (3H, ch)
        self.proj = (np.ascontiguousarray(proj.T[None]), model.bias_ih.detach().float().numpy().copy())

    def __call__(self, cond: np.ndarray, speaker: int) -> np.ndarray:
        """cond (K, C) -> (K, 3H) float32."""
        K = cond.shape[0]
        spk = np.broadcast_to(self.speakers[speaker], (K, self.speakers.shape[1]))
        x = np.ascontiguousarray(np.concatenate([cond, spk], 1), dtype=np.float32)
        for w, b in self.layers:
            y = np.empty((K, w.shape[2]), np.float32)
            _conv_frames(x, w, b, True, y)
            x = y
        out = np.empty((K, self.proj[0].shape[2]), np.float32)
        _conv_frames(x, self.proj[0], self.proj[1], False, out)
        return out


# --- the sampler object --------------------------------------------------------------
class FusedWaveRNN:
    """Packs a WaveRNN's weights once; `generate` runs the fused loop.

    sparse=True packs the pruned matrices in `block` (dropping zero blocks);
    sparse=False keeps every block (the dense path).
    """

    def __init__(self, model, sparse: bool = True, block: tuple[int, int] | None = None):
        self.model = model
        cfg = model.config
        self.block = tuple(block or cfg.sparse_block)
        self.hop = cfg.hop_length
        sd = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}

        def mat(name):
            return bsr_args(sd[name], self.block, keep_all=not sparse)
        self.W = (mat("weight_hh"), sd["bias_hh"], mat("o1.weight"), sd["o1.bias"], mat("o2.weight"),
                  sd["o2.bias"], mat("o3.weight"), sd["o3.bias"], mat("o4.weight"), sd["o4.bias"])
        self.wx = np.ascontiguousarray(model.masked_weight_ih()[:, :3].detach().float().numpy().T)
        self.density = sum(m[0].size for m in self.W[0::2]) / sum(sd[n].size for n in model.SPARSE)
        self.cond = CondFrames(model)

    def frames(self, cond: torch.Tensor, speaker: torch.Tensor) -> np.ndarray:
        """(B, K, C) features -> (B, K, 3H) float32 gate-space conditioning."""
        c = np.asarray(cond.detach().float().cpu().numpy(), np.float32)
        return np.stack([self.cond(c[i], int(speaker[i])) for i in range(c.shape[0])])

    def generate(self, cond: torch.Tensor, speaker: torch.Tensor, uniforms, threads: int = 1) -> np.ndarray:
        """Same contract as WaveRNN.generate: (B, K, C), (B,), (B, T, 2) -> (B, T) int64."""
        _compile()
        P = self.frames(cond, speaker)
        u = np.ascontiguousarray(np.asarray(uniforms, dtype=np.float64))
        out = np.zeros(u.shape[:2], np.int64)
        return self.run_frames(P, u, out, threads)

    def generate_chunks(self, cond: torch.Tensor, speaker: torch.Tensor, uniforms, chunk: int):
        """One stream ((1, K, C), (1,), (1, T, 2)) in pieces of `chunk` samples:
        yields (n,) int64 arrays whose concatenation equals `generate`'s output.

        The first piece waits only for the frames it reads: the conditioning
        net runs on the first frames (its rows are exact up to `reach` frames
        before the cut, and computed in the same order, so they are the same
        numbers), then on the whole sentence for the rest."""
        _compile()
        K = cond.shape[1]
        head = (chunk - 1) // self.hop + 2 + self.cond.reach  # frames k, k + 1 of the first piece, exact
        P = self.frames(cond[:, :head] if head < K else cond, speaker)[0]
        u = np.ascontiguousarray(np.asarray(uniforms, dtype=np.float64)[0])
        state = np.zeros(self.wx.shape[1] // 3, np.float32)
        prev = np.array([128, 0], np.int64)
        for t0 in range(0, u.shape[0], chunk):
            if t0 > 0 and P.shape[0] < K:
                P = self.frames(cond, speaker)[0]
            out = np.zeros(min(chunk, u.shape[0] - t0), np.int64)
            _run_segment(self.W, self.wx, P, self.hop, u[t0:t0 + len(out)], out, t0, state, prev)
            yield out

    def run_frames(self, P: np.ndarray, u: np.ndarray, out: np.ndarray, threads: int = 1) -> np.ndarray:
        _compile()
        def run(s):
            _run_stream(self.W, self.wx, P[s], self.hop, u[s], out[s])
        if threads <= 1 or P.shape[0] == 1:
            for s in range(P.shape[0]):
                run(s)
        else:  # the loop releases the GIL: one Python thread per stream group
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(run, range(P.shape[0])))
        return out
