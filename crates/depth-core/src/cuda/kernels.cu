// depth-core's fused CUDA kernels (feature `cuda`; compiled to PTX by build.rs with nvcc).
//
// Why: on CUDA every op was composed from candle's generic kernels (LayerNorm and softmax as
// chains of element-wise launches, attention with the N×N score matrix in memory). Each kernel
// here is one launch (or a fixed few) doing the op with float32 arithmetic whatever the storage
// type (float32 or bfloat16), and each has the CPU op of the same name as its reference
// (tests/cuda_ops/fused.rs). Sums that span rows (dγ, dβ) are reduced in a fixed order, never with
// atomics, so a gradient is the same on every run.
//
// Suffixes: `_f32` and `_bf16` are the storage types; all arithmetic is float32.

#include <cuda_bf16.h>
#include <mma.h>
#include <stdint.h>
#include <type_traits>

#define FULL 0xffffffffu

__device__ __forceinline__ float ld(const float *p, size_t i) { return p[i]; }
__device__ __forceinline__ float ld(const __nv_bfloat16 *p, size_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void st(float *p, size_t i, float v) { p[i] = v; }
__device__ __forceinline__ void st(__nv_bfloat16 *p, size_t i, float v) { p[i] = __float2bfloat16(v); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL, v, o));
    return v;
}

// The warp of this thread and its lane; one warp owns one row in the row kernels.
__device__ __forceinline__ int warp_id() { return (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5); }
__device__ __forceinline__ int lane_id() { return (int)(threadIdx.x & 31); }

// ---------------------------------------------------------------------------------------------
// LayerNorm over rows of length d: y = (x − mean) / sqrt(var + eps) · γ + β (biased variance).
// Two passes over the row (mean, then the centred squares), as the CPU op.

template <typename T>
__device__ void layer_norm(const T *x, const T *g, const T *b, T *y, int rows, int d, float eps) {
    int row = warp_id(), lane = lane_id();
    if (row >= rows) return;
    const T *xr = x + (size_t)row * d;
    T *yr = y + (size_t)row * d;
    float s = 0.f;
    for (int i = lane; i < d; i += 32) s += ld(xr, i);
    float mean = warp_sum(s) / d;
    float v = 0.f;
    for (int i = lane; i < d; i += 32) {
        float t = ld(xr, i) - mean;
        v += t * t;
    }
    float rstd = 1.f / sqrtf(warp_sum(v) / d + eps);
    for (int i = lane; i < d; i += 32) st(yr, i, (ld(xr, i) - mean) * rstd * ld(g, i) + ld(b, i));
}

// dx of every row into out[0 .. rows·d), and each row's (mean, rstd) into stats[2·row ..].
// dx = rstd · (dy·γ − mean(dy·γ) − x̂ · mean(dy·γ·x̂)).
template <typename T>
__device__ void layer_norm_bwd_rows(const T *x, const T *g, const T *dy, T *out, float *stats, int rows, int d,
                                    float eps) {
    int row = warp_id(), lane = lane_id();
    if (row >= rows) return;
    const T *xr = x + (size_t)row * d, *dyr = dy + (size_t)row * d;
    float s = 0.f;
    for (int i = lane; i < d; i += 32) s += ld(xr, i);
    float mean = warp_sum(s) / d;
    float v = 0.f;
    for (int i = lane; i < d; i += 32) {
        float t = ld(xr, i) - mean;
        v += t * t;
    }
    float rstd = 1.f / sqrtf(warp_sum(v) / d + eps);
    float m1 = 0.f, m2 = 0.f;
    for (int i = lane; i < d; i += 32) {
        float gg = ld(dyr, i) * ld(g, i);
        m1 += gg;
        m2 += gg * (ld(xr, i) - mean) * rstd;
    }
    m1 = warp_sum(m1) / d;
    m2 = warp_sum(m2) / d;
    for (int i = lane; i < d; i += 32) {
        float xh = (ld(xr, i) - mean) * rstd;
        st(out + (size_t)row * d, i, rstd * (ld(dyr, i) * ld(g, i) - m1 - xh * m2));
    }
    if (lane == 0) {
        stats[2 * row] = mean;
        stats[2 * row + 1] = rstd;
    }
}

// Partial dγ, dβ over the rows of chunk blockIdx.y (`chunk` rows each): partial[(y·2 + 0)·d + c]
// = Σ dy·x̂, partial[(y·2 + 1)·d + c] = Σ dy; one thread per column c.
template <typename T>
__device__ void layer_norm_bwd_cols(const T *x, const T *dy, const float *stats, float *partial, int rows, int d,
                                    int chunk) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= d) return;
    int r0 = blockIdx.y * chunk, r1 = min(rows, r0 + chunk);
    float ag = 0.f, ab = 0.f;
    for (int r = r0; r < r1; r++) {
        float gy = ld(dy, (size_t)r * d + c);
        ag += gy * (ld(x, (size_t)r * d + c) - stats[2 * r]) * stats[2 * r + 1];
        ab += gy;
    }
    partial[((size_t)blockIdx.y * 2) * d + c] = ag;
    partial[((size_t)blockIdx.y * 2 + 1) * d + c] = ab;
}

// The chunks' partial sums added in chunk order: dγ into out[rows·d + c], dβ into out[(rows + 1)·d + c].
template <typename T>
__device__ void layer_norm_bwd_sum(const float *partial, T *out, int rows, int d, int chunks) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= d) return;
    float ag = 0.f, ab = 0.f;
    for (int p = 0; p < chunks; p++) {
        ag += partial[((size_t)p * 2) * d + c];
        ab += partial[((size_t)p * 2 + 1) * d + c];
    }
    st(out, (size_t)rows * d + c, ag);
    st(out, (size_t)(rows + 1) * d + c, ab);
}

// ---------------------------------------------------------------------------------------------
// Softmax over rows of length d (max-shifted), and its gradient dx = y ⊙ (dy − Σ dy ⊙ y).

template <typename T>
__device__ void softmax(const T *x, T *y, int rows, int d) {
    int row = warp_id(), lane = lane_id();
    if (row >= rows) return;
    const T *xr = x + (size_t)row * d;
    T *yr = y + (size_t)row * d;
    float m = -INFINITY;
    for (int i = lane; i < d; i += 32) m = fmaxf(m, ld(xr, i));
    m = warp_max(m);
    float s = 0.f;
    for (int i = lane; i < d; i += 32) s += expf(ld(xr, i) - m);
    float inv = 1.f / warp_sum(s);
    for (int i = lane; i < d; i += 32) st(yr, i, expf(ld(xr, i) - m) * inv);
}

template <typename T>
__device__ void softmax_bwd(const T *y, const T *dy, T *dx, int rows, int d) {
    int row = warp_id(), lane = lane_id();
    if (row >= rows) return;
    size_t o = (size_t)row * d;
    float dot = 0.f;
    for (int i = lane; i < d; i += 32) dot += ld(y, o + i) * ld(dy, o + i);
    dot = warp_sum(dot);
    for (int i = lane; i < d; i += 32) st(dx, o + i, ld(y, o + i) * (ld(dy, o + i) - dot));
}

// ---------------------------------------------------------------------------------------------
// GELU, exact (erf) form: y = x·Φ(x); dx = dy·(Φ(x) + x·φ(x)).

template <typename T>
__device__ void gelu(const T *x, T *y, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = ld(x, i);
        st(y, i, 0.5f * v * (1.f + erff(v * 0.70710678118654752f)));
    }
}

template <typename T>
__device__ void gelu_bwd(const T *x, const T *dy, T *dx, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = ld(x, i);
        float cdf = 0.5f * (1.f + erff(v * 0.70710678118654752f));
        float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
        st(dx, i, ld(dy, i) * (cdf + v * pdf));
    }
}

// ---------------------------------------------------------------------------------------------
// Resampling with sparse 1-D rules (CSR: output o = Σ w[k] · x[idx[k]] over k ∈ [off[o], off[o+1])),
// the op of resample/ (bilinear, PyTorch's bicubic, OpenCV's cubic; the backward applies the
// transposed rules): along the last dim, then along dim −2, float32 sums in tap order; an output
// element per thread, so no sum is shared between threads.

// out[r][o] = Σ_k w[k] · x[r][idx[k]] for `rows` rows of n_in samples.
extern "C" __global__ void resample_cols_f32(const float *x, float *out, const int *off, const int *idx,
                                             const float *w, int rows, int n_in, int n_out) {
    size_t total = (size_t)rows * n_out;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        size_t r = e / n_out;
        int o = (int)(e % n_out);
        const float *src = x + r * n_in;
        float acc = 0.f;
        for (int k = off[o]; k < off[o + 1]; k++) acc += w[k] * src[idx[k]];
        out[e] = acc;
    }
}

// out[p][o][j] = Σ_k w[k] · x[p][idx[k]][j] for `planes` planes of n_in rows of `width`.
extern "C" __global__ void resample_rows_f32(const float *x, float *out, const int *off, const int *idx,
                                             const float *w, int planes, int n_in, int n_out, int width) {
    size_t total = (size_t)planes * n_out * width;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        int j = (int)(e % width);
        size_t t = e / width;
        int o = (int)(t % n_out);
        size_t p = t / n_out;
        const float *src = x + p * n_in * (size_t)width + j;
        float acc = 0.f;
        for (int k = off[o]; k < off[o + 1]; k++) acc += w[k] * src[(size_t)idx[k] * width];
        out[e] = acc;
    }
}

// ---------------------------------------------------------------------------------------------
// Attention softmax(scale · Q Kᵀ) V for head dimension 64 (every DINOv2 size), flash-style: the
// N×N scores never leave registers. Q, K, V, O are (heads, n, 64), contiguous. On CUDA cores,
// instantiated for float32 (the entry points at the end); bf16 has the tensor-core kernels below.
//
// Launch with exactly 256 threads a block (64 rows × 4), grid (⌈n/64⌉, heads).
// A block owns 64 rows (queries in the forward and dQ, keys in dK/dV) with 4 threads per row;
// thread `t` of a row holds dimensions t, t + 4, …, t + 60 (16 registers per vector), so the four
// threads read four adjacent floats of a shared-memory row (no bank conflicts) and a dot product
// is their 16-term partials added with two shuffles. The other side (keys and values in the
// forward) streams through shared memory in tiles of 64 rows, 16 scores at a time in registers;
// the softmax is the online one (running maximum and sum, rescaled once per 16 scores).

#define HD 64
#define TILE 64
#define SUB 16
#define PER 16  // dims per thread

// Loads rows [r0, r0 + TILE) of a (n, 64) matrix into shared memory as float (zeros past n).
template <typename T>
__device__ __forceinline__ void load_tile(float (*dst)[HD], const T *src, int r0, int n) {
    for (int i = threadIdx.x; i < TILE * HD; i += blockDim.x) {
        int r = i / HD, c = i % HD;
        dst[r][c] = (r0 + r < n) ? ld(src, (size_t)(r0 + r) * HD + c) : 0.f;
    }
}

__device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(FULL, v, 1);
    v += __shfl_xor_sync(FULL, v, 2);
    return v;
}

// (a · x, b · y) over the 64 dims of a row: this thread's 16 dims of two register rows against
// two shared-memory rows, summed over the row's 4 threads.
__device__ __forceinline__ void dot_pair(const float (&a)[PER], const float *x, const float (&b)[PER], const float *y,
                                         int t, float &ax, float &by) {
    ax = 0.f;
    by = 0.f;
#pragma unroll
    for (int j = 0; j < PER; j++) {
        ax += a[j] * x[4 * j + t];
        by += b[j] * y[4 * j + t];
    }
    ax = quad_sum(ax);
    by = quad_sum(by);
}

// The forward; with `lse` non-null also each query's log-sum-exp of its scaled scores (what the
// backward needs), with `o` null only that.
template <typename T>
__device__ void flash_fwd(const T *q, const T *k, const T *v, T *o, float *lse, int n, float scale) {
    __shared__ float ks[TILE][HD];
    __shared__ float vs[TILE][HD];
    size_t head = (size_t)blockIdx.y * n * HD;
    int row = blockIdx.x * TILE + threadIdx.x / 4, t = threadIdx.x % 4;
    bool live = row < n;
    float qr[PER], acc[PER];
    for (int j = 0; j < PER; j++) {
        qr[j] = live ? ld(q, head + (size_t)row * HD + 4 * j + t) : 0.f;
        acc[j] = 0.f;
    }
    float m = -INFINITY, l = 0.f;
    for (int k0 = 0; k0 < n; k0 += TILE) {
        __syncthreads();
        load_tile(ks, k + head, k0, n);
        load_tile(vs, v + head, k0, n);
        __syncthreads();
        for (int s0 = 0; s0 < TILE && k0 + s0 < n; s0 += SUB) {
            float s[SUB], mt = -INFINITY;
#pragma unroll
            for (int jj = 0; jj < SUB; jj++) {
                float p = 0.f;
#pragma unroll
                for (int j = 0; j < PER; j++) p += qr[j] * ks[s0 + jj][4 * j + t];
                p = quad_sum(p) * scale;
                s[jj] = (k0 + s0 + jj < n) ? p : -INFINITY;
                mt = fmaxf(mt, s[jj]);
            }
            float mn = fmaxf(m, mt);
            float corr = expf(m - mn);  // m = −∞ on the first keys: corr = 0, acc and l are 0
            l *= corr;
#pragma unroll
            for (int j = 0; j < PER; j++) acc[j] *= corr;
#pragma unroll
            for (int jj = 0; jj < SUB; jj++) {
                float p = expf(s[jj] - mn);
                l += p;
                if (o)  // (uniform) the lse-only pass of the backward skips P·V
#pragma unroll
                    for (int j = 0; j < PER; j++) acc[j] += p * vs[s0 + jj][4 * j + t];
            }
            m = mn;
        }
    }
    if (!live) return;
    float inv = 1.f / l;
    if (o)
        for (int j = 0; j < PER; j++) st(o, head + (size_t)row * HD + 4 * j + t, acc[j] * inv);
    if (lse && t == 0) lse[(size_t)blockIdx.y * n + row] = m + logf(l);
}

// dQ = scale · Σ_j P_ij (dO_i·V_j − Δ_i) K_j with P_ij = exp(scale·Q_i·K_j − lse_i) and
// Δ_i = dO_i·O_i, which this kernel also writes (delta) for the dK/dV kernel.
template <typename T>
__device__ void flash_bwd_dq(const T *q, const T *k, const T *v, const T *o, const T *dout, const float *lse,
                             float *delta, T *dq, int n, float scale) {
    __shared__ float ks[TILE][HD];
    __shared__ float vs[TILE][HD];
    size_t head = (size_t)blockIdx.y * n * HD;
    int row = blockIdx.x * TILE + threadIdx.x / 4, t = threadIdx.x % 4;
    bool live = row < n;
    float qr[PER], dor[PER], acc[PER], dl = 0.f;
    for (int j = 0; j < PER; j++) {
        size_t i = head + (size_t)row * HD + 4 * j + t;
        qr[j] = live ? ld(q, i) : 0.f;
        dor[j] = live ? ld(dout, i) : 0.f;
        dl += live ? dor[j] * ld(o, i) : 0.f;
        acc[j] = 0.f;
    }
    dl = quad_sum(dl);
    float li = live ? lse[(size_t)blockIdx.y * n + row] : 0.f;
    if (live && t == 0) delta[(size_t)blockIdx.y * n + row] = dl;
    for (int k0 = 0; k0 < n; k0 += TILE) {
        __syncthreads();
        load_tile(ks, k + head, k0, n);
        load_tile(vs, v + head, k0, n);
        __syncthreads();
        int kn = min(TILE, n - k0);
        for (int jj = 0; jj < kn; jj++) {
            float s, dp;
            dot_pair(qr, ks[jj], dor, vs[jj], t, s, dp);
            float ds = expf(s * scale - li) * (dp - dl);
#pragma unroll
            for (int j = 0; j < PER; j++) acc[j] += ds * ks[jj][4 * j + t];
        }
    }
    if (!live) return;
    for (int j = 0; j < PER; j++) st(dq, head + (size_t)row * HD + 4 * j + t, acc[j] * scale);
}

// dV_j = Σ_i P_ij dO_i and dK_j = scale · Σ_i P_ij (dO_i·V_j − Δ_i) Q_i: a block owns 64 keys and
// streams the queries (Q, dO, lse, Δ) through shared memory.
template <typename T>
__device__ void flash_bwd_dkdv(const T *q, const T *k, const T *v, const T *dout, const float *lse,
                               const float *delta, T *dk, T *dv, int n, float scale) {
    __shared__ float qs[TILE][HD];
    __shared__ float dos[TILE][HD];
    __shared__ float ls[TILE], ds_[TILE];
    size_t head = (size_t)blockIdx.y * n * HD;
    int row = blockIdx.x * TILE + threadIdx.x / 4, t = threadIdx.x % 4;
    bool live = row < n;
    float kr[PER], vr[PER], ak[PER], av[PER];
    for (int j = 0; j < PER; j++) {
        size_t i = head + (size_t)row * HD + 4 * j + t;
        kr[j] = live ? ld(k, i) : 0.f;
        vr[j] = live ? ld(v, i) : 0.f;
        ak[j] = 0.f;
        av[j] = 0.f;
    }
    for (int q0 = 0; q0 < n; q0 += TILE) {
        __syncthreads();
        load_tile(qs, q + head, q0, n);
        load_tile(dos, dout + head, q0, n);
        for (int i = threadIdx.x; i < TILE; i += blockDim.x) {
            bool in = q0 + i < n;
            ls[i] = in ? lse[(size_t)blockIdx.y * n + q0 + i] : INFINITY;  // P = 0 past n
            ds_[i] = in ? delta[(size_t)blockIdx.y * n + q0 + i] : 0.f;
        }
        __syncthreads();
        int qn = min(TILE, n - q0);
        for (int ii = 0; ii < qn; ii++) {
            float s, dp;
            dot_pair(kr, qs[ii], vr, dos[ii], t, s, dp);
            float p = expf(s * scale - ls[ii]);
            float ds = p * (dp - ds_[ii]);
#pragma unroll
            for (int j = 0; j < PER; j++) {
                av[j] += p * dos[ii][4 * j + t];
                ak[j] += ds * qs[ii][4 * j + t];
            }
        }
    }
    if (!live) return;
    for (int j = 0; j < PER; j++) {
        size_t i = head + (size_t)row * HD + 4 * j + t;
        st(dk, i, ak[j] * scale);
        st(dv, i, av[j]);
    }
}

// ---------------------------------------------------------------------------------------------
// The bf16 forward on tensor cores (wmma 16×16×16, bf16 products summed in float32), head dim 64.
// Two passes over the keys instead of the online rescaling (a wmma accumulator's element layout
// is opaque, so O cannot be rescaled in registers): the first finds each query's maximum and
// sum (its log-sum-exp, written when `lse` is non-null), the second accumulates
// O = Σ exp(s − lse) V with the final weights, P rounded to bf16 for the product as
// FlashAttention does. 3 products instead of 2, all on tensor cores.
// Launch: 128 threads (4 warps × 16 queries), grid (⌈n/64⌉, heads), 44.5 KB static shared memory.

using namespace nvcuda;

// Shared-memory row strides of the tensor-core kernels, padded so that the 16 rows a wmma load
// or store touches do not all start in the same bank (64 bf16 or 64 floats would be 128 or 256
// bytes: every row at bank 0, 8-way conflicts): 72 bf16 (144 bytes) and 68 floats (272 bytes).
// A tile starts at a row that is a multiple of 16 and a column that is a multiple of 16, so
// every wmma pointer stays 32-byte aligned (16 · 144 = 72 · 32, 16 · 272 = 136 · 32).
#define LDB 72
#define LDF 68

__device__ __forceinline__ void load_tile_bf16(__nv_bfloat16 (*dst)[LDB], const __nv_bfloat16 *src, int r0, int n) {
    // 8 bf16 (16 bytes) per thread and step; rows past n are zeros
    for (int i = threadIdx.x; i < TILE * HD / 8; i += blockDim.x) {
        int r = i / (HD / 8), c = (i % (HD / 8)) * 8;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (r0 + r < n) v = *reinterpret_cast<const uint4 *>(src + (size_t)(r0 + r) * HD + c);
        *reinterpret_cast<uint4 *>(&dst[r][c]) = v;
    }
}

extern "C" __global__ void __launch_bounds__(128)
    flash_fwd_tc_bf16(const __nv_bfloat16 *q, const __nv_bfloat16 *k, const __nv_bfloat16 *v, __nv_bfloat16 *o,
                      float *lse, int n, float scale) {
    __shared__ __align__(32) __nv_bfloat16 ks[TILE][LDB];
    __shared__ __align__(32) __nv_bfloat16 vs[TILE][LDB];
    __shared__ __align__(32) __nv_bfloat16 ps[TILE][LDB];
    __shared__ __align__(32) float ss[TILE][LDF];
    __shared__ float row_m[TILE], row_l[TILE];
    size_t head = (size_t)blockIdx.y * n * HD;
    int q0 = blockIdx.x * TILE, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int wr = warp * 16;  // this warp's first row in the block

    // Q (64 × 64) through shared memory (the ks buffer) into registers: 4 fragments a warp
    load_tile_bf16(ks, q + head, q0, n);
    __syncthreads();
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> qf[HD / 16];
    for (int kk = 0; kk < HD / 16; kk++) wmma::load_matrix_sync(qf[kk], &ks[wr][kk * 16], LDB);
    if (threadIdx.x < TILE) {
        row_m[threadIdx.x] = -INFINITY;
        row_l[threadIdx.x] = 0.f;
    }

    // S (the warp's 16 rows × 64 keys of tile k0) = scale · Q Kᵀ into ss, keys past n at −∞
    auto scores = [&](int k0) {
        for (int j = 0; j < TILE / 16; j++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
            wmma::fill_fragment(c, 0.f);
            for (int kk = 0; kk < HD / 16; kk++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> kf;
                wmma::load_matrix_sync(kf, &ks[j * 16][kk * 16], LDB);  // Kᵀ: K's rows as columns
                wmma::mma_sync(c, qf[kk], kf, c);
            }
            wmma::store_matrix_sync(&ss[wr][j * 16], c, LDF, wmma::mem_row_major);
        }
        __syncwarp();
        for (int r = 0; r < 16; r++)
            for (int c = lane; c < TILE; c += 32)
                ss[wr + r][c] = (k0 + c < n) ? ss[wr + r][c] * scale : -INFINITY;
        __syncwarp();
    };

    // pass 1: each row's maximum and sum of exponentials (online over the tiles)
    for (int k0 = 0; k0 < n; k0 += TILE) {
        __syncthreads();
        load_tile_bf16(ks, k + head, k0, n);
        __syncthreads();
        scores(k0);
        for (int r = 0; r < 16; r++) {
            float a = ss[wr + r][lane], b = ss[wr + r][lane + 32];
            float mt = warp_max(fmaxf(a, b));
            float mn = fmaxf(row_m[wr + r], mt);
            float sum = warp_sum(expf(a - mn) + expf(b - mn));
            __syncwarp();
            if (lane == 0) {
                row_l[wr + r] = row_l[wr + r] * expf(row_m[wr + r] - mn) + sum;
                row_m[wr + r] = mn;
            }
            __syncwarp();
        }
    }
    // lse per row (kept in row_m)
    if (lane < 16) row_m[wr + lane] = row_m[wr + lane] + logf(row_l[wr + lane]);
    __syncwarp();

    // pass 2: O = Σ exp(s − lse) V, P in bf16
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> of[HD / 16];
    for (int d = 0; d < HD / 16; d++) wmma::fill_fragment(of[d], 0.f);
    if (o) {
        for (int k0 = 0; k0 < n; k0 += TILE) {
            __syncthreads();
            load_tile_bf16(ks, k + head, k0, n);
            load_tile_bf16(vs, v + head, k0, n);
            __syncthreads();
            scores(k0);
            for (int r = 0; r < 16; r++)
                for (int c = lane; c < TILE; c += 32)
                    ps[wr + r][c] = __float2bfloat16(expf(ss[wr + r][c] - row_m[wr + r]));
            __syncwarp();
            for (int d = 0; d < HD / 16; d++)
                for (int kk = 0; kk < TILE / 16; kk++) {
                    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> pf;
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> vf;
                    wmma::load_matrix_sync(pf, &ps[wr][kk * 16], LDB);
                    wmma::load_matrix_sync(vf, &vs[kk * 16][d * 16], LDB);
                    wmma::mma_sync(of[d], pf, vf, of[d]);
                }
        }
        // out through ss (this warp's rows only), rows past n not written
        for (int d = 0; d < HD / 16; d++) wmma::store_matrix_sync(&ss[wr][d * 16], of[d], LDF, wmma::mem_row_major);
        __syncwarp();
        for (int r = 0; r < 16; r++) {
            int row = q0 + wr + r;
            if (row < n)
                for (int c = lane; c < HD; c += 32) o[head + (size_t)row * HD + c] = __float2bfloat16(ss[wr + r][c]);
        }
    }
    if (lse && lane < 16 && q0 + wr + lane < n) lse[(size_t)blockIdx.y * n + q0 + wr + lane] = row_m[wr + lane];
}

// The bf16 backward on tensor cores, the same split as the CUDA-core one (dQ with queries owned,
// then dK/dV with keys owned, Δ written by the first). Nothing is rescaled (lse is known), so
// the gradients accumulate in wmma fragments; P and dS are rounded to bf16 for their products,
// as FlashAttention does. Same arguments as flash_bwd_dq_bf16 / flash_bwd_dkdv_bf16; launch: 128
// threads, grid (⌈n/64⌉, heads), BWD_TC_SMEM bytes of dynamic shared memory.

// The backward kernels' 64 000 bytes of dynamic shared memory (over the 48 KB a static array
// may take; the host raises the kernel's limit and passes this size): four 64-row bf16 tiles,
// the float scores, the bf16 products' left operand (rows padded as above) and two per-row
// vectors.
#define BWD_TC_SMEM (4 * TILE * LDB * 2 + TILE * LDF * 4 + TILE * LDB * 2 + 2 * TILE * 4)
typedef __nv_bfloat16 Row[LDB];
#define SMEM_CARVE(a, b, c, d, s_, p_, v1, v2)                                  \
    extern __shared__ __align__(128) unsigned char smem[];                       \
    Row *a = reinterpret_cast<Row *>(smem), *b = a + TILE, *c = b + TILE, *d = c + TILE; \
    float(*s_)[LDF] = reinterpret_cast<float(*)[LDF]>(d + TILE);               \
    Row *p_ = reinterpret_cast<Row *>(s_ + TILE);                              \
    float *v1 = reinterpret_cast<float *>(p_ + TILE), *v2 = v1 + TILE;

// acc (16 × 64, this warp's rows) += A (16 × 64, row-major in shared memory, ld LDB) · B (64 × 64,
// shared memory, ld LDB; `b_transposed`: B = Mᵀ of the row-major M stored there).
template <bool b_transposed>
__device__ __forceinline__ void mma_16x64(wmma::fragment<wmma::accumulator, 16, 16, 16, float> (&acc)[HD / 16],
                                          const __nv_bfloat16 *a, const __nv_bfloat16 *b) {
    using BL = typename std::conditional<b_transposed, wmma::col_major, wmma::row_major>::type;
    for (int kk = 0; kk < 4; kk++) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> af;
        wmma::load_matrix_sync(af, a + kk * 16, LDB);
        for (int j = 0; j < 4; j++) {
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, BL> bf;
            // B[kk-block][j-block]: element (r, c) of B is M[c][r] when transposed
            const __nv_bfloat16 *p = b_transposed ? b + (j * 16) * LDB + kk * 16 : b + (kk * 16) * LDB + j * 16;
            wmma::load_matrix_sync(bf, p, LDB);
            wmma::mma_sync(acc[j], af, bf, acc[j]);
        }
    }
}

__device__ __forceinline__ void zero(wmma::fragment<wmma::accumulator, 16, 16, 16, float> (&acc)[HD / 16]) {
    for (int j = 0; j < 4; j++) wmma::fill_fragment(acc[j], 0.f);
}

// This warp's 16 × 64 accumulator, times `mul`, to bf16 rows [row0, row0 + 16) of a (n, 64)
// matrix at `dst` (rows past n skipped), through the warp's float scratch rows.
__device__ __forceinline__ void store_rows(wmma::fragment<wmma::accumulator, 16, 16, 16, float> (&acc)[HD / 16],
                                           float (*scratch)[LDF], __nv_bfloat16 *dst, int row0, int n, float mul) {
    for (int j = 0; j < 4; j++) wmma::store_matrix_sync(&scratch[0][j * 16], acc[j], LDF, wmma::mem_row_major);
    __syncwarp();
    int lane = threadIdx.x % 32;
    for (int r = 0; r < 16; r++)
        if (row0 + r < n)
            for (int c = lane; c < HD; c += 32) dst[(size_t)(row0 + r) * HD + c] = __float2bfloat16(scratch[r][c] * mul);
    __syncwarp();
}

extern "C" __global__ void __launch_bounds__(128)
    flash_bwd_dq_tc_bf16(const __nv_bfloat16 *qkv, const __nv_bfloat16 *o, const __nv_bfloat16 *dout, const float *lse,
                         float *delta, __nv_bfloat16 *grads, int n, float scale) {
    // own0, own1: this block's Q and dO rows
    SMEM_CARVE(ks, vs, own0, own1, ss, ps, row_lse, row_delta);
    size_t m = (size_t)gridDim.y * n * HD, head = (size_t)blockIdx.y * n * HD;
    const __nv_bfloat16 *q = qkv + head, *k = qkv + m + head, *v = qkv + 2 * m + head;
    int q0 = blockIdx.x * TILE, warp = threadIdx.x / 32, lane = threadIdx.x % 32, wr = warp * 16;
    load_tile_bf16(own0, q, q0, n);
    load_tile_bf16(own1, dout + head, q0, n);
    __syncthreads();
    // Δ = rowsum(dO ⊙ O) and lse for this warp's rows
    for (int r = 0; r < 16; r++) {
        int row = q0 + wr + r;
        float dl = 0.f;
        if (row < n)
            for (int c = lane; c < HD; c += 32)
                dl += __bfloat162float(own1[wr + r][c]) * __bfloat162float(o[head + (size_t)row * HD + c]);
        dl = warp_sum(dl);
        if (lane == 0) {
            row_delta[wr + r] = dl;
            row_lse[wr + r] = row < n ? lse[(size_t)blockIdx.y * n + row] : 0.f;
            if (row < n) delta[(size_t)blockIdx.y * n + row] = dl;
        }
    }
    __syncwarp();
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> dq[HD / 16], acc[HD / 16];
    zero(dq);
    for (int k0 = 0; k0 < n; k0 += TILE) {
        __syncthreads();
        load_tile_bf16(ks, k, k0, n);
        load_tile_bf16(vs, v, k0, n);
        __syncthreads();
        // P = exp(scale · Q Kᵀ − lse), keys past n at 0, kept in registers (2 columns a lane)
        zero(acc);
        mma_16x64<true>(acc, &own0[wr][0], &ks[0][0]);
        for (int j = 0; j < 4; j++) wmma::store_matrix_sync(&ss[wr][j * 16], acc[j], LDF, wmma::mem_row_major);
        __syncwarp();
        float pr[16][2];
        for (int r = 0; r < 16; r++)
            for (int h = 0; h < 2; h++) {
                int c = lane + 32 * h;
                pr[r][h] = (k0 + c < n) ? expf(ss[wr + r][c] * scale - row_lse[wr + r]) : 0.f;
            }
        __syncwarp();
        // dS = P ⊙ (dO Vᵀ − Δ) into ps (bf16)
        zero(acc);
        mma_16x64<true>(acc, &own1[wr][0], &vs[0][0]);
        for (int j = 0; j < 4; j++) wmma::store_matrix_sync(&ss[wr][j * 16], acc[j], LDF, wmma::mem_row_major);
        __syncwarp();
        for (int r = 0; r < 16; r++)
            for (int h = 0; h < 2; h++) {
                int c = lane + 32 * h;
                ps[wr + r][c] = __float2bfloat16(pr[r][h] * (ss[wr + r][c] - row_delta[wr + r]));
            }
        __syncwarp();
        // dQ += dS K
        mma_16x64<false>(dq, &ps[wr][0], &ks[0][0]);
    }
    store_rows(dq, ss + wr, grads + head, q0 + wr, n, scale);
}

extern "C" __global__ void __launch_bounds__(128)
    flash_bwd_dkdv_tc_bf16(const __nv_bfloat16 *qkv, const __nv_bfloat16 *dout, const float *lse, const float *delta,
                           __nv_bfloat16 *grads, int n, float scale) {
    // own0, own1: this block's K and V rows
    SMEM_CARVE(qs, dos, own0, own1, ss, ps, col_lse, col_delta);
    size_t m = (size_t)gridDim.y * n * HD, head = (size_t)blockIdx.y * n * HD;
    const __nv_bfloat16 *q = qkv + head, *k = qkv + m + head, *v = qkv + 2 * m + head;
    int k0 = blockIdx.x * TILE, warp = threadIdx.x / 32, lane = threadIdx.x % 32, wr = warp * 16;
    load_tile_bf16(own0, k, k0, n);
    load_tile_bf16(own1, v, k0, n);
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> dk[HD / 16], dv[HD / 16], acc[HD / 16];
    zero(dk);
    zero(dv);
    for (int q0 = 0; q0 < n; q0 += TILE) {
        __syncthreads();
        load_tile_bf16(qs, q, q0, n);
        load_tile_bf16(dos, dout + head, q0, n);
        for (int i = threadIdx.x; i < TILE; i += blockDim.x) {
            bool in = q0 + i < n;
            col_lse[i] = in ? lse[(size_t)blockIdx.y * n + q0 + i] : 0.f;
            col_delta[i] = in ? delta[(size_t)blockIdx.y * n + q0 + i] : 0.f;
        }
        __syncthreads();
        // Pᵀ (this warp's 16 keys × 64 queries) = exp(scale · K Qᵀ − lse[query]), queries past n at 0
        zero(acc);
        mma_16x64<true>(acc, &own0[wr][0], &qs[0][0]);
        for (int j = 0; j < 4; j++) wmma::store_matrix_sync(&ss[wr][j * 16], acc[j], LDF, wmma::mem_row_major);
        __syncwarp();
        for (int r = 0; r < 16; r++)
            for (int c = lane; c < TILE; c += 32)
                ps[wr + r][c] = __float2bfloat16((q0 + c < n) ? expf(ss[wr + r][c] * scale - col_lse[c]) : 0.f);
        __syncwarp();
        // dV += Pᵀ dO
        mma_16x64<false>(dv, &ps[wr][0], &dos[0][0]);
        // dPᵀ = V dOᵀ; dSᵀ = Pᵀ ⊙ (dPᵀ − Δ[query]) into ps
        zero(acc);
        mma_16x64<true>(acc, &own1[wr][0], &dos[0][0]);
        __syncwarp();  // every lane's dV products have read ps
        for (int j = 0; j < 4; j++) wmma::store_matrix_sync(&ss[wr][j * 16], acc[j], LDF, wmma::mem_row_major);
        __syncwarp();
        // (P read back in bf16 here: its float copy would cost the registers this kernel lacks)
        for (int r = 0; r < 16; r++)
            for (int c = lane; c < TILE; c += 32)
                ps[wr + r][c] = __float2bfloat16(__bfloat162float(ps[wr + r][c]) * (ss[wr + r][c] - col_delta[c]));
        __syncwarp();
        // dK += dSᵀ Q
        mma_16x64<false>(dk, &ps[wr][0], &qs[0][0]);
    }
    store_rows(dk, ss + wr, grads + m + head, k0 + wr, n, scale);
    store_rows(dv, ss + wr, grads + 2 * m + head, k0 + wr, n, 1.f);
}

// ---------------------------------------------------------------------------------------------
// The entry points, one per storage type.

#define ENTRIES(T, S)                                                                                         \
    extern "C" __global__ void layer_norm_##S(const T *x, const T *g, const T *b, T *y, int rows, int d,      \
                                              float eps) {                                                    \
        layer_norm(x, g, b, y, rows, d, eps);                                                                 \
    }                                                                                                         \
    extern "C" __global__ void layer_norm_bwd_rows_##S(const T *x, const T *g, const T *dy, T *out,           \
                                                       float *stats, int rows, int d, float eps) {            \
        layer_norm_bwd_rows(x, g, dy, out, stats, rows, d, eps);                                              \
    }                                                                                                         \
    extern "C" __global__ void layer_norm_bwd_cols_##S(const T *x, const T *dy, const float *stats,           \
                                                       float *partial, int rows, int d, int chunk) {          \
        layer_norm_bwd_cols(x, dy, stats, partial, rows, d, chunk);                                           \
    }                                                                                                         \
    extern "C" __global__ void layer_norm_bwd_sum_##S(const float *partial, T *out, int rows, int d,          \
                                                      int chunks) {                                           \
        layer_norm_bwd_sum(partial, out, rows, d, chunks);                                                    \
    }                                                                                                         \
    extern "C" __global__ void softmax_##S(const T *x, T *y, int rows, int d) { softmax(x, y, rows, d); }     \
    extern "C" __global__ void softmax_bwd_##S(const T *y, const T *dy, T *dx, int rows, int d) {             \
        softmax_bwd(y, dy, dx, rows, d);                                                                      \
    }                                                                                                         \
    extern "C" __global__ void gelu_##S(const T *x, T *y, size_t n) { gelu(x, y, n); }                        \
    extern "C" __global__ void gelu_bwd_##S(const T *x, const T *dy, T *dx, size_t n) {                       \
        gelu_bwd(x, dy, dx, n);                                                                               \
    }

ENTRIES(float, f32)
ENTRIES(__nv_bfloat16, bf16)

// Attention on CUDA cores: float32 only (bf16 runs on tensor cores, the _tc_bf16 kernels above).
extern "C" __global__ void __launch_bounds__(256)
    flash_fwd_f32(const float *q, const float *k, const float *v, float *o, float *lse, int n, float scale) {
    flash_fwd(q, k, v, o, lse, n, scale);
}

// The backward reads q, k, v stacked as qkv (3, heads, n, 64) and writes dq, dk, dv stacked.
extern "C" __global__ void __launch_bounds__(256)
    flash_bwd_dq_f32(const float *qkv, const float *o, const float *dout, const float *lse, float *delta,
                     float *grads, int n, float scale) {
    size_t m = (size_t)gridDim.y * n * HD;
    flash_bwd_dq(qkv, qkv + m, qkv + 2 * m, o, dout, lse, delta, grads, n, scale);
}

extern "C" __global__ void __launch_bounds__(256)
    flash_bwd_dkdv_f32(const float *qkv, const float *dout, const float *lse, const float *delta, float *grads,
                       int n, float scale) {
    size_t m = (size_t)gridDim.y * n * HD;
    flash_bwd_dkdv(qkv, qkv + m, qkv + 2 * m, dout, lse, delta, grads + m, grads + 2 * m, n, scale);
}
