/* One GRU direction over a batch of packed variable-length sequences (built by kernels/cbuild.py).

   The input projections gx = W_ih x + b_ih of every frame are computed by the
   caller as one GEMM; this runs the recurrence. Sequences are packed one after
   another (frame f of sequence b is row offsets[b] + f) and sorted by length,
   longest first, so at step t the sequences still running are rows 0..n_t-1
   of the hidden state: one (n_t x H) @ (H x 3H) product per step, the
   weights read once per step for all of them (Deep Speech 2's reason to batch).
   reverse=1 runs each sequence from its last frame to its first.

   PyTorch's gate order and equations (r, z, n):
     r = sigmoid(gx_r + W_hr h + b_hr), z = sigmoid(gx_z + W_hz h + b_hz)
     n = tanh(gx_n + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h
   Written with GCC vector extensions (AVX-512, AVX2 or 128-bit, whatever
   -march=native offers): register tiles of up to 4 rows x 4 vectors for the
   product, a Cephes-style polynomial exp (about 2 ulp) for the gates. Every
   value goes through the same operations whatever the batch, so a sequence
   gets bit-identical outputs alone or in any batch. */
#include <stdint.h>
#include <string.h>
#if defined(__FMA__)
#include <immintrin.h>
#endif

/* VB: bytes per vector; NVMAX: vectors per register tile (4 x NVMAX accumulators, NVMAX weights and a
   broadcast must fit the register file: 32 vector registers with AVX-512, 16 otherwise) */
#if defined(__AVX512F__)
#define VB 64
#define NVMAX 4
#elif defined(__AVX2__)
#define VB 32
#define NVMAX 2
#else
#define VB 16
#define NVMAX 2
#endif
#define L (VB / 4) /* floats per vector */
typedef float vf __attribute__((vector_size(VB)));
typedef int32_t vi __attribute__((vector_size(VB)));
typedef float vfu __attribute__((vector_size(VB), aligned(4)));
#define INLINE static inline __attribute__((always_inline))

INLINE vf ld(const float *p) { return *(const vfu *)p; }
INLINE void st(float *p, vf v) { *(vfu *)p = v; }
INLINE vf bc(float a) { return (vf){} + a; }
/* c + a * b, rounded once where the CPU has FMA. Written out because the library is built with
   -ffp-contract=off (models/deepspeech2/recurrent.py): GCC otherwise fuses some unrolled copies of a
   tile and not others (seen on an AVX2 build), so a row's floats changed with the number of rows. */
INLINE vf fmadd(vf a, vf b, vf c) {
#if defined(__FMA__) && VB == 64
    return (vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(__FMA__) && VB == 32
    return (vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#elif defined(__FMA__)
    return (vf)_mm_fmadd_ps((__m128)a, (__m128)b, (__m128)c);
#else
    return c + a * b;
#endif
}
INLINE vf pick(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }

INLINE vf vexp(vf x) {
    x = pick(x < 88.0f, x, bc(88.0f));
    x = pick(x > -87.0f, x, bc(-87.0f));
    vf n = (x * 1.44269504f + 12582912.0f) - 12582912.0f; /* round to nearest */
    vf r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    vf p = bc(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    vi e = (__builtin_convertvector(n, vi) + 127) << 23;
    return p * (vf)e;
}

INLINE vf vsigmoid(vf x) { return 1.0f / (1.0f + vexp(-x)); }
INLINE vf vtanh(vf x) { return 2.0f / (1.0f + vexp(-2.0f * x)) - 1.0f; }

/* gh[rows, nv vectors] = bias + h[rows, :H] @ wt[:H, nv vectors] (row strides H, ldw, ldw). */
INLINE void tile(const int rows, const int nv, int H, int ldw, const float *h, const float *wt,
                 const float *bias, float *gh) {
    vf acc[4][NVMAX];
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nv; v++) acc[r][v] = ld(bias + v * L);
    for (int k = 0; k < H; k++) {
        vf w[NVMAX];
        for (int v = 0; v < nv; v++) w[v] = ld(wt + (int64_t)k * ldw + v * L);
        for (int r = 0; r < rows; r++) {
            vf a = bc(h[(int64_t)r * H + k]);
            for (int v = 0; v < nv; v++) acc[r][v] = fmadd(a, w[v], acc[r][v]);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nv; v++) st(gh + (int64_t)r * ldw + v * L, acc[r][v]);
}

#define TILE(R, NV) tile(R, NV, H, ldw, h, wt, bias, gh)
#if NVMAX == 4
#define BY_NV(R) switch (nv) { case 1: TILE(R, 1); break; case 2: TILE(R, 2); break; \
                               case 3: TILE(R, 3); break; default: TILE(R, 4); }
#else
#define BY_NV(R) switch (nv) { case 1: TILE(R, 1); break; default: TILE(R, 2); }
#endif

static void tile_any(int rows, int nv, int H, int ldw, const float *h, const float *wt, const float *bias,
                     float *gh) {
    switch (rows) {
    case 1: BY_NV(1); break;
    case 2: BY_NV(2); break;
    case 3: BY_NV(3); break;
    default: BY_NV(4);
    }
}

/* gh (rows x ldw) = bias + h (rows x H) @ wt (H x ldw); ldw a multiple of L. */
static void hidden_product(int rows, int H, int ldw, const float *h, const float *wt, const float *bias, float *gh) {
    int nvec = ldw / L;
    for (int r0 = 0; r0 < rows; r0 += 4) {
        int nr = rows - r0 < 4 ? rows - r0 : 4;
        for (int v0 = 0; v0 < nvec; v0 += NVMAX) {
            int nv = nvec - v0 < NVMAX ? nvec - v0 : NVMAX; /* 1..NVMAX */
            tile_any(nr, nv, H, ldw, h + (int64_t)r0 * H, wt + v0 * L, bias + v0 * L, gh + (int64_t)r0 * ldw + v0 * L);
        }
    }
}

/* The same product for a block-sparse W (R x K) in BSR with (br, 1) blocks (kernels/format.py):
   y (rows x ldy) = bias + x (rows x K, row stride ldx) @ W^T. Per block row (br outputs = NB vectors)
   and group of up to 8 rows (4 when a block is more than one vector), the stored blocks add x[r, k] * w[block] in increasing k: each value
   goes through the same chain whatever the number of rows (so alone or in any batch), and, skipped
   blocks being zeros that add exactly nothing, the same floats as the dense product above. */
INLINE void sparse_tile(const int rows, const int nb, int64_t ldx, int64_t ldy, const float *x, const float *vals,
                        const int32_t *cols, int nblk, const float *bias, float *y) {
    vf acc[8][4];
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nb; v++) acc[r][v] = ld(bias + v * L);
    for (int j = 0; j < nblk; j++) {
        const int k = cols[j];
        vf w[4];
        for (int v = 0; v < nb; v++) w[v] = ld(vals + (int64_t)j * nb * L + v * L);
        for (int r = 0; r < rows; r++) {
            vf a = bc(x[(int64_t)r * ldx + k]);
            for (int v = 0; v < nb; v++) acc[r][v] = fmadd(a, w[v], acc[r][v]);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nb; v++) st(y + (int64_t)r * ldy + v * L, acc[r][v]);
}

#define STILE(RR, NB) sparse_tile(RR, NB, ldx, ldy, xr, vals + (int64_t)k0 * br, col_idx + k0, nblk, bias + b0, \
                                  yr + b0)
#define S_BY_NB(RR) switch (br / L) { case 1: STILE(RR, 1); break; case 2: STILE(RR, 2); break; \
                                      case 3: STILE(RR, 3); break; default: STILE(RR, 4); }

/* Whether the BSR product runs (br, 1) blocks for R output rows: br a multiple of the lane width,
   at most 4 vectors, R whole block rows. */
int sw_bsr_ok(int R, int br) { return br > 0 && br % L == 0 && br / L <= 4 && R % br == 0; }

/* y (rows x ldy, columns 0..R-1) = bias (R) + x (rows x K, row stride ldx) @ W^T for W (R x K) in BSR:
   float32 values (nnzb, br), col_idx, row_ptr (R / br + 1) of (br, 1) blocks. Returns -1 unless
   sw_bsr_ok(R, br). */
int sw_bsr_rows(int rows, const float *x, int64_t ldx, const float *vals, const int32_t *col_idx,
                const int32_t *row_ptr, int br, int R, const float *bias, float *y, int64_t ldy) {
    if (!sw_bsr_ok(R, br)) return -1;
    const int tile_rows = br == L ? 8 : 4; /* one vector per block: 8 independent FMA chains */
    for (int r0 = 0; r0 < rows; r0 += tile_rows) {
        const int nr = rows - r0 < tile_rows ? rows - r0 : tile_rows;
        const float *xr = x + (int64_t)r0 * ldx;
        float *yr = y + (int64_t)r0 * ldy;
        for (int rb = 0; rb < R / br; rb++) {
            const int k0 = row_ptr[rb], nblk = row_ptr[rb + 1] - k0, b0 = rb * br;
            switch (nr) {
            case 1: S_BY_NB(1); break;
            case 2: S_BY_NB(2); break;
            case 3: S_BY_NB(3); break;
            case 4: S_BY_NB(4); break;
            case 5: STILE(5, 1); break; /* 5..8 rows: one vector per block (br == L) */
            case 6: STILE(6, 1); break;
            case 7: STILE(7, 1); break;
            default: STILE(8, 1);
            }
        }
    }
    return 0;
}

/* W_hh, dense (vals NULL: wt = W_hh^T, H x ldw) or block-sparse (vals, col_idx, row_ptr, br). */
typedef struct {
    const float *wt, *vals;
    const int32_t *col_idx, *row_ptr;
    int br;
} hh_weights;

/* One vector of hidden units: gates from x (input projections) and g (hidden products), h updated. */
INLINE vf gru_unit(vf xr, vf xz, vf xn, vf gr, vf gz, vf gn, vf h) {
    vf r = vsigmoid(xr + gr), z = vsigmoid(xz + gz);
    vf n = vtanh(xn + r * gn);
    return n + z * (h - n); /* (1 - z) n + z h */
}

static void gates(int H, const float *x, const float *g, float *h, float *out) {
    int i = 0;
    for (; i + L <= H; i += L) {
        vf v = gru_unit(ld(x + i), ld(x + H + i), ld(x + 2 * H + i), ld(g + i), ld(g + H + i), ld(g + 2 * H + i),
                        ld(h + i));
        st(h + i, v);
        st(out + i, v);
    }
    if (i < H) { /* the last H % L units, through the same vector code */
        float t[7][L];
        memset(t, 0, sizeof t);
        int n = H - i;
        const float *src[7] = {x + i, x + H + i, x + 2 * H + i, g + i, g + H + i, g + 2 * H + i, h + i};
        for (int j = 0; j < 7; j++) memcpy(t[j], src[j], sizeof(float) * n);
        vf v = gru_unit(ld(t[0]), ld(t[1]), ld(t[2]), ld(t[3]), ld(t[4]), ld(t[5]), ld(t[6]));
        st(t[0], v);
        memcpy(h + i, t[0], sizeof(float) * n);
        memcpy(out + i, t[0], sizeof(float) * n);
    }
}

/* Floats per lane vector: the caller pads W_hh's columns to a multiple of this. */
int sw_gru_lanes(void) { return L; }

static int run_direction(int n_seq, const int64_t *offsets, const int64_t *lengths, int reverse, int H,
                         const float *gx, int64_t ldx, hh_weights w, const float *bias, int ldw, float *out,
                         int64_t ldo, float *work) {
    if (ldw % L != 0 || ldw < 3 * H) return -1;
    for (int b = 1; b < n_seq; b++)
        if (lengths[b] > lengths[b - 1]) return -1;
    float *h = work, *gh = work + (int64_t)n_seq * H;
    memset(h, 0, sizeof(float) * (size_t)n_seq * H);
    int active = n_seq;
    int64_t steps = n_seq ? lengths[0] : 0;
    for (int64_t t = 0; t < steps; t++) {
        while (active > 0 && lengths[active - 1] <= t) active--;
        if (w.vals)
            sw_bsr_rows(active, h, H, w.vals, w.col_idx, w.row_ptr, w.br, 3 * H, bias, gh, ldw);
        else
            hidden_product(active, H, ldw, h, w.wt, bias, gh);
        for (int b = 0; b < active; b++) {
            int64_t f = offsets[b] + (reverse ? lengths[b] - 1 - t : t);
            gates(H, gx + f * ldx, gh + (int64_t)b * ldw, h + (int64_t)b * H, out + f * ldo);
        }
    }
    return 0;
}

/* n_seq sequences, lengths sorted descending; gx rows of stride ldx (3H used), out rows of stride ldo
   (H written); wt = W_hh transposed and column-padded (H x ldw, ldw >= 3H a multiple of sw_gru_lanes()),
   bias = b_hh padded to ldw; work: n_seq * (H + ldw) floats. Returns 0, or -1 on bad arguments. */
int sw_gru_direction(int n_seq, const int64_t *offsets, const int64_t *lengths, int reverse, int H,
                     const float *gx, int64_t ldx, const float *wt, const float *bias, int ldw,
                     float *out, int64_t ldo, float *work) {
    hh_weights w = {wt, NULL, NULL, NULL, 0};
    return run_direction(n_seq, offsets, lengths, reverse, H, gx, ldx, w, bias, ldw, out, ldo, work);
}

/* sw_gru_direction with W_hh (3H x H) block-sparse: float32 values (nnzb, br), col_idx, row_ptr
   (3H / br + 1) of (br, 1) blocks (kernels/format.py's BSR). Returns -1 unless sw_bsr_ok(3H, br). */
int sw_gru_direction_bsr(int n_seq, const int64_t *offsets, const int64_t *lengths, int reverse, int H,
                         const float *gx, int64_t ldx, const float *vals, const int32_t *col_idx,
                         const int32_t *row_ptr, int br, const float *bias, int ldw, float *out, int64_t ldo,
                         float *work) {
    if (!sw_bsr_ok(3 * H, br)) return -1;
    hh_weights w = {NULL, vals, col_idx, row_ptr, br};
    return run_direction(n_seq, offsets, lengths, reverse, H, gx, ldx, w, bias, ldw, out, ldo, work);
}
