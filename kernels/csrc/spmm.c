/* Block-sparse x small dense matrix on the CPU, hand-vectorized (built by kernels/cbuild.py).

   out (R, N) = S (R, C) @ x (C, N); x and out row-major with row strides ldx, ldo.
   S is BSR with row blocks (see kernels/format.py): values (nnzb, br * bc) as
   float32 (vdtype 0), bfloat16 bits (1) or float16 bits (2); math in float32.

   Loop nest: per block row, per group of RG rows of the block, per column tile
   of NV vectors, an RG x NV register tile of accumulators; each stored block
   adds w[r, c] (broadcast) times x[col, tile] (NV vector loads) for every row
   r and block column c. For 16x1 blocks and 16 columns on AVX-512 that is one
   load of x and 16 broadcast-FMAs per block, all in registers. Half values are
   decoded per block row into a small float32 scratch (stays in L1).

   One path per ISA, chosen by the compiler flags: AVX-512 (16 lanes, mask
   registers for the column tail), AVX2 + FMA (8 lanes, maskload), or portable
   GCC vector extensions (4 lanes; correctness anywhere, not speed). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define W 16
#define MAX_ACC 24 /* of 32 registers: the rest hold x and the broadcast */
#define ISA 512
typedef __m512 vf;
typedef __mmask16 vmask;
static inline vmask tail_mask(int n) { return n >= 16 ? (vmask)0xFFFF : (vmask)((1u << n) - 1u); }
#define VZERO() _mm512_setzero_ps()
#define VLOADM(p, m) _mm512_maskz_loadu_ps((m), (p))
#define VSTOREM(p, v, m) _mm512_mask_storeu_ps((p), (m), (v))
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VSET1(s) _mm512_set1_ps(s)
#define FULL_MASK ((vmask)0xFFFF)

#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define W 8
#define MAX_ACC 12 /* of 16 registers */
#define ISA 256
typedef __m256 vf;
typedef __m256i vmask;
static inline vmask tail_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#define VZERO() _mm256_setzero_ps()
#define VLOADM(p, m) _mm256_maskload_ps((p), (m))
#define VSTOREM(p, v, m) _mm256_maskstore_ps((p), (m), (v))
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VSET1(s) _mm256_set1_ps(s)
#define FULL_MASK tail_mask(8)

#else
#define W 4
#define MAX_ACC 8
#define ISA 0
typedef float vf __attribute__((vector_size(16)));
typedef int vmask; /* lanes in use */
static inline vmask tail_mask(int n) { return n >= 4 ? 4 : n; }
static inline vf vloadm(const float *p, vmask m) {
    vf v = {0, 0, 0, 0};
    for (int i = 0; i < m; i++) v[i] = p[i];
    return v;
}
static inline void vstorem(float *p, vf v, vmask m) {
    for (int i = 0; i < m; i++) p[i] = v[i];
}
#define VZERO() ((vf){0, 0, 0, 0})
#define VLOADM(p, m) vloadm((p), (m))
#define VSTOREM(p, v, m) vstorem((p), (v), (m))
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VSET1(s) ((vf){(s), (s), (s), (s)})
#define FULL_MASK 4
#endif

/* Independent accumulator sets for a tile of n vectors: a block's FMAs into one set
   depend on the previous block's (4-cycle latency), so small tiles alternate sets. */
#define CHAINS(n) ((n) >= 8 ? 1 : (n) >= 4 ? 2 : 4)

/* Block k of a register tile: acc[r][t] += w[k][rg0 + r, c] x[col + c, j0 + t * W]. */
static inline __attribute__((always_inline)) void tile_block(
    const int RG, const int NV, const int bc, vf acc[16][4], const float *w, const int *ci, int k, int br,
    int rg0, const float *x, int64_t ldx, int C, const float *zrow, int j0, vmask m, const int *sh) {
    const int c0 = ci[k] * bc;
    if (sh) x += sh[k]; /* conv: stored block k reads its input row from frame j + sh[k] */
    const float *wk = w + (int64_t)k * br * bc + rg0 * bc;
    for (int c = 0; c < bc; c++) {
        const float *xr = (bc == 1 || c0 + c < C) ? x + (int64_t)(c0 + c) * ldx + j0 : zrow;
        vf xv[4];
#pragma GCC unroll 4
        for (int t = 0; t < NV; t++) xv[t] = VLOADM(xr + t * W, t == NV - 1 ? m : FULL_MASK);
#pragma GCC unroll 16
        for (int r = 0; r < RG; r++) {
            const vf wv = VSET1(wk[r * bc + c]);
#pragma GCC unroll 4
            for (int t = 0; t < NV; t++) acc[r][t] = VFMA(wv, xv[t], acc[r][t]);
        }
    }
}

/* Rows rg0..rg0+RG of one block row (nrows of them exist), columns j0..j0+NV*W
   (the last vector masked by m) of out; blocks w (nblk, br * bc) with block
   columns ci. x rows past C (partial last block column) read zrow. */
static inline __attribute__((always_inline)) void tile_body(
    const int RG, const int NV, const int bc, const float *w, const int *ci, int nblk, int br,
    int rg0, int nrows, const float *x, int64_t ldx, int C, const float *zrow, int j0, vmask m,
    float *out, int64_t ldo, const int *sh, const float *bias) {
    const int U = CHAINS(RG * NV);
    vf acc[4][16][4];
#pragma GCC unroll 4
    for (int u = 0; u < U; u++)
#pragma GCC unroll 16
        for (int r = 0; r < RG; r++)
#pragma GCC unroll 4
            for (int t = 0; t < NV; t++) acc[u][r][t] = VZERO();
    int k = 0;
    for (; k + U <= nblk; k += U)
#pragma GCC unroll 4
        for (int u = 0; u < U; u++) tile_block(RG, NV, bc, acc[u], w, ci, k + u, br, rg0, x, ldx, C, zrow, j0, m, sh);
    for (; k < nblk; k++) tile_block(RG, NV, bc, acc[0], w, ci, k, br, rg0, x, ldx, C, zrow, j0, m, sh);
#pragma GCC unroll 16
    for (int r = 0; r < RG; r++) {
        if (rg0 + r >= nrows) break;
        float *o = out + (int64_t)(rg0 + r) * ldo + j0;
#pragma GCC unroll 4
        for (int t = 0; t < NV; t++) {
            vf sum = acc[0][r][t];
#pragma GCC unroll 4
            for (int u = 1; u < U; u++) sum += acc[u][r][t];
            if (bias) sum += VSET1(bias[rg0 + r]);
            VSTOREM(o + t * W, sum, t == NV - 1 ? m : FULL_MASK);
        }
    }
}

typedef void (*tile_fn)(const float *, const int *, int, int, int, int, int, const float *, int64_t, int,
                        const float *, int, vmask, float *, int64_t, const int *, const float *);

/* One function per (RG, NV) and bc == 1, bc == 4 or any bc: constants unroll into registers. */
#define DEF_TILE_BC(KIND, BC, RG, NV)                                                                  \
    static void tile##KIND##_##RG##_##NV(const float *w, const int *ci, int nblk, int br, int bc,      \
                                         int rg0, int nrows, const float *x, int64_t ldx, int C,       \
                                         const float *zrow, int j0, vmask m, float *out, int64_t ldo,  \
                                         const int *sh, const float *bias) {                           \
        (void)bc;                                                                                      \
        tile_body(RG, NV, BC, w, ci, nblk, br, rg0, nrows, x, ldx, C, zrow, j0, m, out, ldo, sh, bias); \
    }
#define DEF_TILE(RG, NV) DEF_TILE_BC(1, 1, RG, NV) DEF_TILE_BC(4, 4, RG, NV) DEF_TILE_BC(n, bc, RG, NV)
#define DEF_RG(RG) DEF_TILE(RG, 1) DEF_TILE(RG, 2) DEF_TILE(RG, 3) DEF_TILE(RG, 4)
DEF_RG(1)
DEF_RG(2)
DEF_RG(4)
DEF_RG(8)
DEF_TILE(16, 1)

#define KIND_ROW(KIND, RG) {tile##KIND##_##RG##_1, tile##KIND##_##RG##_2, tile##KIND##_##RG##_3, tile##KIND##_##RG##_4}
#define ROW(RG) KIND_ROW(1, RG), KIND_ROW(4, RG), KIND_ROW(n, RG)
static const tile_fn TILES[5][3][4] = {
    {ROW(1)}, {ROW(2)}, {ROW(4)}, {ROW(8)},
    {{tile1_16_1, 0, 0, 0}, {tile4_16_1, 0, 0, 0}, {tilen_16_1, 0, 0, 0}},
};

/* Rows in lanes, for (br, 1) blocks and few columns: the br rows of a block are
   RV vectors (the last masked by rm), and each stored block adds them times
   x[col, j] (broadcast) for J columns: J FMAs per block where the register
   tile above spends br / W x ceil(J / W). The J x br result is stored transposed. */
static inline __attribute__((always_inline)) void lanes_block(
    const int RV, const int J, vf acc[2][8], const float *w, const int *ci, int k, int br, vmask rm,
    const float *x, int64_t ldx, int j0, const int *sh) {
    vf wv[2];
#pragma GCC unroll 2
    for (int v = 0; v < RV; v++) wv[v] = VLOADM(w + (int64_t)k * br + v * W, v == RV - 1 ? rm : FULL_MASK);
    const float *xr = x + (int64_t)ci[k] * ldx + j0 + (sh ? sh[k] : 0);
#pragma GCC unroll 8
    for (int j = 0; j < J; j++) {
        const vf xs = VSET1(xr[j]);
#pragma GCC unroll 2
        for (int v = 0; v < RV; v++) acc[v][j] = VFMA(wv[v], xs, acc[v][j]);
    }
}

static inline __attribute__((always_inline)) void lanes_body(
    const int RV, const int J, const float *w, const int *ci, int nblk, int br, vmask rm, int nrows,
    const float *x, int64_t ldx, int j0, float *out, int64_t ldo, const int *sh, const float *bias) {
    const int U = CHAINS(RV * J);
    vf acc[4][2][8];
#pragma GCC unroll 4
    for (int u = 0; u < U; u++)
#pragma GCC unroll 2
        for (int v = 0; v < RV; v++)
#pragma GCC unroll 8
            for (int j = 0; j < J; j++) acc[u][v][j] = VZERO();
    int k = 0;
    for (; k + U <= nblk; k += U)
#pragma GCC unroll 4
        for (int u = 0; u < U; u++) lanes_block(RV, J, acc[u], w, ci, k + u, br, rm, x, ldx, j0, sh);
    for (; k < nblk; k++) lanes_block(RV, J, acc[0], w, ci, k, br, rm, x, ldx, j0, sh);
#if ISA == 0
    float tmp[8][2 * W] = {{0}}; /* gcc cannot see that the portable stores fill every lane */
#else
    float tmp[8][2 * W];
#endif
#pragma GCC unroll 8
    for (int j = 0; j < J; j++)
#pragma GCC unroll 2
        for (int v = 0; v < RV; v++) {
            vf sum = acc[0][v][j];
#pragma GCC unroll 4
            for (int u = 1; u < U; u++) sum += acc[u][v][j];
            VSTOREM(&tmp[j][v * W], sum, FULL_MASK);
        }
    for (int r = 0; r < nrows; r++)
        for (int j = 0; j < J; j++) out[(int64_t)r * ldo + j0 + j] = tmp[j][r] + (bias ? bias[r] : 0.0f);
}

typedef void (*lanes_fn)(const float *, const int *, int, int, vmask, int, const float *, int64_t, int, float *,
                         int64_t, const int *, const float *);
#define DEF_LANES(RV, J)                                                                                \
    static void lanes_##RV##_##J(const float *w, const int *ci, int nblk, int br, vmask rm, int nrows,  \
                                 const float *x, int64_t ldx, int j0, float *out, int64_t ldo,          \
                                 const int *sh, const float *bias) {                                    \
        lanes_body(RV, J, w, ci, nblk, br, rm, nrows, x, ldx, j0, out, ldo, sh, bias);                  \
    }
#define DEF_LANES_RV(RV) DEF_LANES(RV, 1) DEF_LANES(RV, 2) DEF_LANES(RV, 3) DEF_LANES(RV, 4) \
                         DEF_LANES(RV, 5) DEF_LANES(RV, 6) DEF_LANES(RV, 7) DEF_LANES(RV, 8)
DEF_LANES_RV(1)
DEF_LANES_RV(2)
#define LANES_ROW(RV) {lanes_##RV##_1, lanes_##RV##_2, lanes_##RV##_3, lanes_##RV##_4, \
                       lanes_##RV##_5, lanes_##RV##_6, lanes_##RV##_7, lanes_##RV##_8}
static const lanes_fn LANES[2][8] = {LANES_ROW(1), LANES_ROW(2)};

/* Whether rows in lanes pays for this block height and column count: half the FMAs
   of the register tile or fewer (measured: the transposed store costs the rest). */
static int lanes_pays(int br, int bc, int N) {
    const int rv = (br + W - 1) / W;
    return bc == 1 && rv <= 2 && 2 * rv * N <= br * ((N + W - 1) / W);
}

static void spmm_lanes(const float *w, const int *ci, int nblk, int br, int nrows, const float *x, int64_t ldx,
                       int N, float *out, int64_t ldo, const int *sh, const float *bias) {
    const int rv = (br + W - 1) / W;
    int jmax = MAX_ACC / rv;
    if (jmax > 8) jmax = 8;
    const vmask rm = tail_mask(br - (rv - 1) * W);
    for (int j0 = 0; j0 < N; j0 += jmax) {
        const int J = N - j0 < jmax ? N - j0 : jmax;
        LANES[rv - 1][J - 1](w, ci, nblk, br, rm, nrows, x, ldx, j0, out, ldo, sh, bias);
    }
}

static int log2_rg(int rg) { return rg == 16 ? 4 : rg == 8 ? 3 : rg == 4 ? 2 : rg == 2 ? 1 : 0; }

/* The widest row group (16, 8, 4, 2, 1) that fits in rem rows and the register budget. */
static int row_group(int rem) {
    int rg = 16;
    while (rg > rem || rg > MAX_ACC) rg >>= 1;
    return rg;
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void decode(const void *vals, int vdtype, int64_t i0, int64_t n, float *dst) {
    if (vdtype == 1) {
        const uint16_t *s = (const uint16_t *)vals + i0;
        for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(s[i]);
    } else {
        const uint16_t *s = (const uint16_t *)vals + i0;
#if defined(__F16C__)
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
        for (; i < n; i++) dst[i] = _cvtsh_ss(s[i]);
#else
        for (int64_t i = 0; i < n; i++) { /* move the bits, rescale the exponent by 2^112 */
            uint32_t u = s[i], e = u & 0x7C00u;
            uint32_t bits = ((u & 0x8000u) << 16) | ((u & 0x7FFFu) << 13);
            if (e == 0x7C00u) bits |= 0x7F800000u; /* inf, nan */
            float f;
            memcpy(&f, &bits, 4);
            dst[i] = e == 0x7C00u ? f : f * 5.192296858534828e33f;
        }
#endif
    }
}

/* Lanes per vector of the compiled path (16, 8 or 4) and its ISA (512, 256 or 0 = portable). */
int sw_vector_width(void) { return W; }
int sw_isa(void) { return ISA; }

/* Block rows rb0..rb1 of out = S x (+ bias), the loop nest of sw_spmm; scratch holds the
   decoded values of one block row (half dtypes), zrow N + W zeros (bc > 1 and C % bc),
   sh the per-block frame shift of a convolution (or NULL). */
static void run_rows(const void *vals, int vdtype, const int *col_idx, const int *row_ptr, int br, int bc, int R,
                     int C, const float *x, int64_t ldx, int N, float *out, int64_t ldo, int rb0, int rb1,
                     float *scratch, const float *zrow, const int *sh, const float *bias) {
    const int bs = br * bc, which = bc == 1 ? 0 : bc == 4 ? 1 : 2, lanes = lanes_pays(br, bc, N);
    for (int rb = rb0; rb < rb1; rb++) {
        const int k0 = row_ptr[rb], nblk = row_ptr[rb + 1] - k0;
        const int r0 = rb * br, nrows = R - r0 < br ? R - r0 : br;
        const float *w = (const float *)vals + (int64_t)k0 * bs;
        const int *shk = sh ? sh + k0 : NULL;
        const float *bk = bias ? bias + r0 : NULL;
        if (vdtype != 0 && nblk > 0) {
            decode(vals, vdtype, (int64_t)k0 * bs, (int64_t)nblk * bs, scratch);
            w = scratch;
        }
        if (lanes) {
            spmm_lanes(w, col_idx + k0, nblk, br, nrows, x, ldx, N, out + (int64_t)r0 * ldo, ldo, shk, bk);
            continue;
        }
        for (int rg0 = 0; rg0 < nrows; ) {
            const int rg = row_group(nrows - rg0);
            int nv_max = MAX_ACC / rg;
            if (nv_max > 4) nv_max = 4;
            if (rg == 16) nv_max = 1;
            for (int j0 = 0; j0 < N; ) {
                const int rem = N - j0;
                int nv = (rem + W - 1) / W;
                if (nv > nv_max) nv = nv_max;
                const int ncols = rem < nv * W ? rem : nv * W;
                const vmask m = tail_mask(ncols - (nv - 1) * W);
                TILES[log2_rg(rg)][which][nv - 1](w, col_idx + k0, nblk, br, bc, rg0, nrows, x, ldx, C, zrow,
                                                  j0, m, out + (int64_t)r0 * ldo, ldo, shk, bk);
                j0 += ncols;
            }
            rg0 += rg;
        }
    }
}

static int max_blocks(const int *row_ptr, int rb0, int rb1) {
    int max_blk = 0;
    for (int rb = rb0; rb < rb1; rb++)
        if (row_ptr[rb + 1] - row_ptr[rb] > max_blk) max_blk = row_ptr[rb + 1] - row_ptr[rb];
    return max_blk;
}

/* out rows of block rows rb0..rb1 = S x. Returns 0, or -1 if scratch memory ran out. */
int sw_spmm(const void *vals, int vdtype, const int *col_idx, const int *row_ptr, int br, int bc, int R,
            int C, const float *x, int64_t ldx, int N, float *out, int64_t ldo, int rb0, int rb1) {
    if (N <= 0 || rb1 <= rb0) return 0;
    const int max_blk = max_blocks(row_ptr, rb0, rb1);
    float *scratch = NULL, *zrow = NULL;
    if (vdtype != 0 && max_blk > 0 && !(scratch = malloc(sizeof(float) * (size_t)max_blk * br * bc))) return -1;
    if (bc > 1 && C % bc && !(zrow = calloc((size_t)N + W, sizeof(float)))) {
        free(scratch);
        return -1;
    }
    run_rows(vals, vdtype, col_idx, row_ptr, br, bc, R, C, x, ldx, N, out, ldo, rb0, rb1, scratch, zrow, NULL, NULL);
    free(scratch);
    free(zrow);
    return 0;
}

/* Frames per pass over all block rows in sw_conv1d: the input rows of a pass stay in L2
   (96 channels x 512 frames = 192 KB), where one pass over the whole signal per block row
   streams them from memory for every block row. */
#define CONV_CHUNK 512

/* Output frames a..b of a convolution whose input frames a - pad .. b + reach - pad reach
   past the signal: a zero-padded copy of that window (C rows). */
static int conv_edge(const void *vals, int vdtype, const int *x_row, const int *shift, const int *row_ptr, int br,
                     int R, int C, const float *x, int64_t ldx, int T, int pad, int reach, float *out, int64_t ldo,
                     int a, int b, float *scratch, const float *bias) {
    const int width = b - a + reach;
    float *win = calloc((size_t)C * width, sizeof(float));
    if (!win) return -1;
    for (int c = 0; c < C; c++)
        for (int i = 0; i < width; i++) {
            const int t = a + i - pad;
            if (t >= 0 && t < T) win[(int64_t)c * width + i] = x[(int64_t)c * ldx + t];
        }
    run_rows(vals, vdtype, x_row, row_ptr, br, 1, R, C, win, width, b - a, out + a, ldo, 0,
             (R + br - 1) / br, scratch, NULL, shift, bias);
    free(win);
    return 0;
}

/* Sparse Conv1d, (br, 1) blocks: out (R, T_out) = bias + sum over stored blocks k of
   values[k] x[x_row[k], t + shift[k] - pad], x (C, T) unpadded (zeros outside), T_out =
   T + 2 pad - reach, shift[k] = tap * dilation in 0..reach. Frames whose taps stay inside
   the signal read x in place (in chunks of CONV_CHUNK frames); the pad-wide edges read a
   zero-padded copy. bias may be NULL. Returns 0, or -1 if memory ran out. */
int sw_conv1d(const void *vals, int vdtype, const int *x_row, const int *shift, const int *row_ptr, int br,
              int R, int C, const float *x, int64_t ldx, int T, int pad, int reach, float *out, int64_t ldo,
              const float *bias) {
    const int t_out = T + 2 * pad - reach, nbr = (R + br - 1) / br;
    if (t_out <= 0 || nbr <= 0) return 0;
    const int max_blk = max_blocks(row_ptr, 0, nbr);
    float *scratch = NULL;
    if (vdtype != 0 && max_blk > 0 && !(scratch = malloc(sizeof(float) * (size_t)max_blk * br))) return -1;
    int lo = pad < t_out ? pad : t_out, hi = t_out - pad, rc = 0;
    if (hi < lo) hi = lo;
    for (int j = lo; j < hi; j += CONV_CHUNK) {  /* out frame j reads x frame j - pad + shift */
        const int n = hi - j < CONV_CHUNK ? hi - j : CONV_CHUNK;
        run_rows(vals, vdtype, x_row, row_ptr, br, 1, R, C, x + (j - pad), ldx, n, out + j, ldo, 0, nbr,
                 scratch, NULL, shift, bias);
    }
    if (lo > 0)
        rc |= conv_edge(vals, vdtype, x_row, shift, row_ptr, br, R, C, x, ldx, T, pad, reach, out, ldo, 0, lo,
                        scratch, bias);
    if (hi < t_out)
        rc |= conv_edge(vals, vdtype, x_row, shift, row_ptr, br, R, C, x, ldx, T, pad, reach, out, ldo, hi, t_out,
                        scratch, bias);
    free(scratch);
    return rc;
}

/* out (C, T * factor) = relu(a[c] x[c, t] + b[c]) repeated factor times along time (nearest
   upsampling): eval-mode batch norm, ReLU and upsampling of a conv's input in one pass,
   where torch makes three. x rows have stride ldx. */
void sw_affine_relu(const float *x, int64_t ldx, int C, int T, const float *a, const float *b, int factor,
                    float *out) {
    for (int c = 0; c < C; c++) {
        const float ac = a[c], bc = b[c], *xr = x + (int64_t)c * ldx;
        float *o = out + (int64_t)c * T * factor;
        if (factor == 1) {
            for (int t = 0; t < T; t++) {
                const float v = ac * xr[t] + bc;
                o[t] = v > 0.0f ? v : 0.0f;
            }
        } else {
            for (int t = 0; t < T; t++) {
                float v = ac * xr[t] + bc;
                v = v > 0.0f ? v : 0.0f;
                for (int i = 0; i < factor; i++) o[(int64_t)t * factor + i] = v;
            }
        }
    }
}

/* exp(x) for x in [-87, 87] (Cephes expf: Cody-Waite reduction by ln 2, degree-6 polynomial;
   about 1 ulp), written so that the compiler vectorizes loops that call it (n is rounded
   with the 1.5 * 2^23 trick: floorf stops the vectorizer). */
static inline float exp_poly(float x) {
    x = x < -87.0f ? -87.0f : (x > 87.0f ? 87.0f : x);
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* n frames of one gate row: tanh(x + x0 + ramp dx) * sigmoid(y + y0 + ramp dy), ramp = (m0 + m) / hop. */
static void gate_span(const float *restrict xa, const float *restrict ya, float *restrict o, int n, int m0, float x0,
                      float dx, float y0, float dy, float inv) {
    for (int m = 0; m < n; m++) {
        const float ramp = (float)(m0 + m) * inv;
        const float x = xa[m] + (x0 + ramp * dx), y = ya[m] + (y0 + ramp * dy);
        /* tanh(x) sigmoid(y) = (e^2x - 1) / ((e^2x + 1)(1 + e^-y)): one division. The clamps keep the
           product finite and change nothing in float32 (tanh(9) rounds to 1; sigmoid(-60) < 1e-26). */
        const float x2 = 2.0f * x < -18.0f ? -18.0f : (2.0f * x > 18.0f ? 18.0f : 2.0f * x);
        const float ex = exp_poly(x2), ey = exp_poly(y < -60.0f ? 60.0f : -y);
        o[m] = (ex - 1.0f) / ((ex + 1.0f) * (1.0f + ey));
    }
}

/* Frames per tile of sw_wavenet_layer: a tile's a (2R rows), g (R rows) and one output row stay in L1. */
#define LAYER_TILE 256

/* o[0..n) (+)= sum over the stored blocks of block row rb, row r, of v * src(row of the block)[j + off]:
   a (br, 1)-block row of a packed matrix times tile rows; src rows have stride lds. */
static void tile_row(const float *restrict v, const int *x_row, const int *shift, const int *row_ptr, int br, int rb,
                     int r, const float *src, int64_t lds, int off, int lo, int n, float *restrict o) {
    for (int k = row_ptr[rb]; k < row_ptr[rb + 1]; k++) {
        const float w = v[(int64_t)k * br + r];
        const int s = shift ? shift[k] : 0, j0 = lo - s > 0 ? lo - s : 0;  /* frames before the signal read zeros */
        const float *restrict x = src + (int64_t)(x_row[k]) * lds + off + s;
        for (int j = j0; j < n; j++) o[j] += w * x[j];
    }
}

/* tile_row for the four rows of block row rb of a (4, 1)-block matrix at once: each stored block's
   input row is loaded once for its four weights (o0..o3 distinct rows). */
static void tile_rows4(const float *restrict v, const int *x_row, const int *shift, const int *row_ptr, int rb,
                       const float *src, int64_t lds, int off, int lo, int n, float *restrict o0,
                       float *restrict o1, float *restrict o2, float *restrict o3) {
    for (int k = row_ptr[rb]; k < row_ptr[rb + 1]; k++) {
        const float w0 = v[4 * (int64_t)k], w1 = v[4 * (int64_t)k + 1], w2 = v[4 * (int64_t)k + 2],
                    w3 = v[4 * (int64_t)k + 3];
        const int s = shift ? shift[k] : 0, j0 = lo - s > 0 ? lo - s : 0;
        const float *restrict x = src + (int64_t)(x_row[k]) * lds + off + s;
        for (int j = j0; j < n; j++) {
            const float xj = x[j];
            o0[j] += w0 * xj;
            o1[j] += w1 * xj;
            o2[j] += w2 * xj;
            o3[j] += w3 * xj;
        }
    }
}

/* Rows rb * br .. of `rows` rows of out (row stride LAYER_TILE) += block row rb times the tile rows. */
static void tile_block_row(const float *v, const int *x_row, const int *shift, const int *row_ptr, int br, int rb,
                           int rows, const float *src, int64_t lds, int off, int lo, int n, float *out) {
    const int r0 = rb * br;
    if (br == 4 && r0 + 4 <= rows) {
        float *o = out + (int64_t)r0 * LAYER_TILE;
        tile_rows4(v, x_row, shift, row_ptr, rb, src, lds, off, lo, n, o, o + LAYER_TILE, o + 2 * LAYER_TILE,
                   o + 3 * LAYER_TILE);
        return;
    }
    for (int r = 0; r < br && r0 + r < rows; r++)
        tile_row(v, x_row, shift, row_ptr, br, rb, r, src, lds, off, lo, n, out + (int64_t)(r0 + r) * LAYER_TILE);
}

/* One layer of a WaveNet flow, fused over tiles of LAYER_TILE frames so that its tensors stay in
   L1 (models/parallel_wavenet.py: flow_params_packed; torch makes seven passes over memory):
     a = bias_a + sum_k Wd[k] h[x_row[k], t + shift[k] - d]   causal dilated conv, kernel 2 (zeros before 0)
     g = tanh(a[:R] + c[:R](t)) * sigmoid(a[R:] + c[R:](t))    c linearly interpolated from the frames f (2R, K)
     u = bias_u + Wu g                                         Wu = [skip; res], (S + R) x R, 1x1
     skips[o] += u[o] (o < S);   h_out[o - S] = h[o - S] + u[o] (o >= S; skipped when h_out is NULL)
   Wd and Wu packed in (br, 1) float32 blocks (values, block columns, row_ptr; Wd's taps as input row
   x_row and shift = tap * d). h, h_out (R, T), skips (S, T) contiguous. Returns 0, or -1 if memory ran out. */
int sw_wavenet_layer(const float *dv, const int *dx_row, const int *dshift, const int *drow_ptr, int dbr,
                     const float *dbias, int R, int d, const float *f, int64_t ldf, int K, int hop, const float *uv,
                     const int *ucol, const int *urow_ptr, int ubr, const float *ubias, int S, const float *h,
                     float *h_out, float *skips, int T) {
    const int rows_u = h_out ? S + R : S;
    float *a = malloc(sizeof(float) * (size_t)(2 * R + R + rows_u) * LAYER_TILE);
    if (!a) return -1;
    float *g = a + (int64_t)2 * R * LAYER_TILE, *u = g + (int64_t)R * LAYER_TILE;
    const float inv = 1.0f / (float)hop;
    for (int t0 = 0; t0 < T; t0 += LAYER_TILE) {
        const int n = T - t0 < LAYER_TILE ? T - t0 : LAYER_TILE;
        for (int o = 0; o < 2 * R; o++)
            for (int j = 0; j < n; j++) a[(int64_t)o * LAYER_TILE + j] = dbias[o];
        for (int rb = 0; rb * dbr < 2 * R; rb++)  /* input frame t0 + j + shift - d: zero while below 0 */
            tile_block_row(dv, dx_row, dshift, drow_ptr, dbr, rb, 2 * R, h, T, t0 - d, d - t0, n, a);
        for (int r = 0; r < R; r++) {
            const float *fx = f + (int64_t)r * ldf, *fy = f + (int64_t)(R + r) * ldf;
            for (int t = t0; t < t0 + n;) {
                const int k = t / hop, k0 = k < K ? k : K - 1, k1 = k + 1 < K ? k + 1 : K - 1;
                const int end = (k + 1) * hop < t0 + n ? (k + 1) * hop : t0 + n, j = t - t0;
                gate_span(a + (int64_t)r * LAYER_TILE + j, a + (int64_t)(R + r) * LAYER_TILE + j,
                          g + (int64_t)r * LAYER_TILE + j, end - t, t - k * hop, fx[k0], fx[k1] - fx[k0], fy[k0],
                          fy[k1] - fy[k0], inv);
                t = end;
            }
        }
        for (int o = 0; o < rows_u; o++)
            for (int j = 0; j < n; j++) u[(int64_t)o * LAYER_TILE + j] = ubias[o];
        for (int rb = 0; rb * ubr < rows_u; rb++)
            tile_block_row(uv, ucol, NULL, urow_ptr, ubr, rb, rows_u, g, LAYER_TILE, 0, 0, n, u);
        for (int o = 0; o < rows_u; o++) {
            const float *restrict uo = u + (int64_t)o * LAYER_TILE;
            if (o < S) {
                float *restrict so = skips + (int64_t)o * T + t0;
                for (int j = 0; j < n; j++) so[j] += uo[j];
            } else {
                const float *restrict hi = h + (int64_t)(o - S) * T + t0;
                float *restrict ho = h_out + (int64_t)(o - S) * T + t0;
                for (int j = 0; j < n; j++) ho[j] = hi[j] + uo[j];
            }
        }
    }
    free(a);
    return 0;
}
