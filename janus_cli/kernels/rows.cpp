// The decode step on AVX512-BF16 CPUs: its memory-bound parts (the linears and single-query
// attention, parallel over OpenMP) and the small per-token work between them (RMSNorm, RoPE and
// the cache write, SwiGLU, residuals), each callable alone and all chained into one call per
// decoder block (janus_block_step) instead of some forty PyTorch ops.
//
// janus_rows_bf16: y (M, N) bf16 = x (M, K) bf16 @ W^T (* scale) (+ bias) for a few rows M,
// streaming W once. W is stored in "pair blocks": outputs in blocks of 64 (then 16 for the
// tail), each block [K/2][width][2] contiguous from element n0 * K, so one `vdpbf16ps`
// multiplies 16 outputs by a broadcast pair x[m, 2k:2k+2] and nothing is reduced across lanes.
// A tile keeps 4 x 6 (outputs x rows) sums in registers (of 32). int8 and int4 weights have
// their own layouts and integer kernels (int8.h, int4.h: janus_rows_int8, janus_rows_int4).
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include <initializer_list>
#include <vector>

namespace {

// MC rows of x against one block of 16 * NB outputs.
template <int NB, int MC>
inline void tile(const uint16_t* x, int64_t K, const uint16_t* w, const float* scale, const float* bias, uint16_t* y,
                 int64_t N) {
    __m512 acc[MC][NB];
    for (int m = 0; m < MC; m++)
        for (int j = 0; j < NB; j++) acc[m][j] = _mm512_setzero_ps();
    const uint32_t* xp = (const uint32_t*)x;  // bf16 pairs
    const int64_t half = K / 2;
    for (int64_t k = 0; k < half; k++) {
        __m512bh wv[NB];
        for (int j = 0; j < NB; j++) wv[j] = (__m512bh)_mm512_loadu_si512(w + (k * NB + j) * 32);
        for (int m = 0; m < MC; m++) {
            __m512bh xv = (__m512bh)_mm512_set1_epi32((int)xp[m * half + k]);
            for (int j = 0; j < NB; j++) acc[m][j] = _mm512_dpbf16_ps(acc[m][j], xv, wv[j]);
        }
    }
    for (int j = 0; j < NB; j++) {
        __m512 s = scale ? _mm512_loadu_ps(scale + j * 16) : _mm512_set1_ps(1.0f);
        __m512 b = bias ? _mm512_loadu_ps(bias + j * 16) : _mm512_setzero_ps();
        for (int m = 0; m < MC; m++) {
            __m512 v = _mm512_fmadd_ps(acc[m][j], s, b);
            _mm256_storeu_si256((__m256i*)(y + m * N + j * 16), (__m256i)_mm512_cvtneps_pbh(v));
        }
    }
}

// All M rows against the block of outputs [n0, n0 + 16 * NB), MCMAX rows at a time.
template <int NB, int MCMAX>
inline void block(const uint16_t* x, int64_t M, int64_t K, const uint16_t* w, const float* scale, const float* bias,
                  uint16_t* y, int64_t N, int64_t n0) {
    const uint16_t* wb = w + n0 * K;
    const float* sb = scale ? scale + n0 : nullptr;
    const float* bb = bias ? bias + n0 : nullptr;
    int64_t m = 0;
    for (; m + MCMAX <= M; m += MCMAX) tile<NB, MCMAX>(x + m * K, K, wb, sb, bb, y + m * N + n0, N);
    const uint16_t* xr = x + m * K;
    uint16_t* yr = y + m * N + n0;
    switch (M - m) {
#define ROWS(r) case r: if (r < MCMAX) tile<NB, (r < MCMAX ? r : 1)>(xr, K, wb, sb, bb, yr, N); break;
        ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6) ROWS(7) ROWS(8) ROWS(9) ROWS(10) ROWS(11)
#undef ROWS
        default: break;
    }
}

// W in blocks of 16 * NB outputs (then 16 for the N % (16 * NB) tail), MCMAX rows at a time.
template <int NB, int MCMAX>
void linear(const uint16_t* x, const uint16_t* w, const float* scale, const float* bias, uint16_t* y, int64_t M, int64_t N,
            int64_t K) {
    const int64_t wide = N / (16 * NB), narrow = (N % (16 * NB)) / 16;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < wide + narrow; b++) {
        if (b < wide)
            block<NB, MCMAX>(x, M, K, w, scale, bias, y, N, b * 16 * NB);
        else
            block<1, 12>(x, M, K, w, scale, bias, y, N, wide * 16 * NB + (b - wide) * 16);
    }
}

// One (row, head): softmax(q . k[s] * scale over visible s) . v[s], D % 32 == 0, D <= 256.
void attend_head(const uint16_t* q, const uint16_t* k, const uint16_t* v, const uint8_t* visible, uint16_t* out,
                 int64_t S, int64_t D, float scale, float* scores) {
    __m512bh qv[8];  // D / 32 bf16 pairs
    const int64_t chunks = D / 32;
    for (int64_t j = 0; j < chunks; j++) qv[j] = (__m512bh)_mm512_loadu_si512(q + j * 32);
    float top = -INFINITY;
    for (int64_t s = 0; s < S; s++) {
        if (visible && !visible[s]) {
            scores[s] = -INFINITY;
            continue;
        }
        __m512 acc = _mm512_setzero_ps();
        for (int64_t j = 0; j < chunks; j++)
            acc = _mm512_dpbf16_ps(acc, qv[j], (__m512bh)_mm512_loadu_si512(k + s * D + j * 32));
        scores[s] = _mm512_reduce_add_ps(acc) * scale;
        top = scores[s] > top ? scores[s] : top;
    }
    float total = 0.0f;
    for (int64_t s = 0; s < S; s++) {
        scores[s] = expf(scores[s] - top);  // exp(-inf) = 0 for hidden slots
        total += scores[s];
    }
    __m512 acc[16];  // D / 16 floats
    for (int64_t j = 0; j < D / 16; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t s = 0; s < S; s++) {
        if (scores[s] == 0.0f) continue;
        __m512 p = _mm512_set1_ps(scores[s] / total);
        for (int64_t j = 0; j < D / 16; j++) {
            __m256i raw = _mm256_loadu_si256((const __m256i*)(v + s * D + j * 16));
            __m512 vf = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));  // bf16 -> fp32
            acc[j] = _mm512_fmadd_ps(p, vf, acc[j]);
        }
    }
    for (int64_t j = 0; j < D / 16; j++)
        _mm256_storeu_si256((__m256i*)(out + j * 16), (__m256i)_mm512_cvtneps_pbh(acc[j]));
}

// 16 bf16 -> 16 fp32 (exact); 16 fp32 -> 16 bf16, rounded to nearest even like PyTorch's casts.
inline __m512 widen16(const uint16_t* p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16));
}
inline __m512 round16(__m512 v) {  // through bf16 and back
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(v)), 16));
}
inline void store16(uint16_t* p, __m512 v) { _mm256_storeu_si256((__m256i*)p, (__m256i)_mm512_cvtneps_pbh(v)); }

#include "act8.h"  // the integer kernels' int8 activations
#include "int4.h"  // int4 weights (needs widen16)
#include "int8.h"  // int8 weights

// One head: out = bf16(bf16(x * cos) + bf16(rotate_half(x) * sin)), the roundings of PyTorch's
// bf16 `x * cos + rotate_half(x) * sin`; rotate_half(x) = [-x2, x1] for halves x1, x2.
inline void rope_head(const uint16_t* x, const uint16_t* cos, const uint16_t* sin, uint16_t* out, int64_t D) {
    const int64_t h = D / 2;
    for (int64_t i = 0; i < h; i += 16) {
        __m512 a = widen16(x + i), b = widen16(x + h + i);
        const __m512 minus_b = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(b), _mm512_set1_epi32(INT32_MIN)));
        __m512 lo = _mm512_add_ps(round16(_mm512_mul_ps(a, widen16(cos + i))), round16(_mm512_mul_ps(minus_b, widen16(sin + i))));
        __m512 hi = _mm512_add_ps(round16(_mm512_mul_ps(b, widen16(cos + h + i))),
                                  round16(_mm512_mul_ps(a, widen16(sin + h + i))));
        store16(out + i, lo);
        store16(out + h + i, hi);
    }
}


// One query per row: q (B, H, D), out (B, H, D); k and v are cache views (B, Hkv, S, D) whose
// rows and heads are STRIDE_B and STRIDE_H elements apart (positions D apart); VISIBLE is
// (B, S) bytes (1 = may attend) or null. Query head h reads kv head h / (H / Hkv).
void attend_rows(const uint16_t* q, const uint16_t* k, const uint16_t* v, const uint8_t* visible, uint16_t* out,
                 int64_t B, int64_t H, int64_t Hkv, int64_t S, int64_t D, int64_t stride_b, int64_t stride_h,
                 float scale) {
#pragma omp parallel
    {
        std::vector<float> scores(S);
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < B * H; bh++) {
            const int64_t b = bh / H, kvh = (bh % H) / (H / Hkv);
            const int64_t at = b * stride_b + kvh * stride_h;
            attend_head(q + bh * D, k + at, v + at, visible ? visible + b * S : nullptr, out + bh * D, S, D, scale,
                        scores.data());
        }
    }
}

// See janus_rmsnorm.
void rmsnorm_rows(const uint16_t* x, const uint16_t* w, uint16_t* y, int64_t M, int64_t C, float eps) {
    for (int64_t m = 0; m < M; m++) {
        const uint16_t* xr = x + m * C;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t c = 0; c < C; c += 16) {
            __m512 v = widen16(xr + c);
            acc = _mm512_fmadd_ps(v, v, acc);
        }
        const __m512 r = _mm512_set1_ps(1.0f / sqrtf(_mm512_reduce_add_ps(acc) / (float)C + eps));
        for (int64_t c = 0; c < C; c += 16)
            store16(y + m * C + c, _mm512_mul_ps(widen16(w + c), round16(_mm512_mul_ps(widen16(xr + c), r))));
    }
}

// One new token per row b < B: q, k, v are row b's projections (ROW elements apart from row to
// row; q holds H heads of D, k and v Hkv heads). Writes rope(q) to q_out (B, H, D), and rope(k)
// and v to the caches at one slot: KC, VC point at [0, 0, slot] of (B, Hkv, S, D) caches whose
// rows and heads are STRIDE_B and STRIDE_H apart. COS, SIN (D,) are row b's at COS_ROW * b.
void rope_rows(const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t row, const uint16_t* cos,
               const uint16_t* sin, int64_t cos_row, uint16_t* q_out, uint16_t* kc, uint16_t* vc, int64_t B, int64_t H,
               int64_t Hkv, int64_t D, int64_t stride_b, int64_t stride_h) {
    for (int64_t b = 0; b < B; b++) {
        const uint16_t *c = cos + b * cos_row, *s = sin + b * cos_row;
        for (int64_t h = 0; h < H; h++) rope_head(q + b * row + h * D, c, s, q_out + (b * H + h) * D, D);
        for (int64_t h = 0; h < Hkv; h++) {
            const int64_t at = b * stride_b + h * stride_h;
            rope_head(k + b * row + h * D, c, s, kc + at, D);
            for (int64_t i = 0; i < D; i++) vc[at + i] = v[b * row + h * D + i];
        }
    }
}

enum Weights : int64_t { BF16 = 0, INT8 = 1, INT4 = 2 };

// x (M, K) @ W^T, no bias: pair blocks W of bf16 (SCALE null); int8 (int8.h): W its codes,
// SCALE fp32 per output, activations in groups of GROUP; or int4 (int4.h): W its codes, SCALE
// its bf16 scales and offsets in groups of GROUP.
void linear_pairs(const uint16_t* x, const void* w, int64_t kind, const void* scale, uint16_t* y, int64_t M, int64_t N,
                  int64_t K, int64_t group) {
    if (kind == INT4)
        linear_int4<INT4_TILE_ROWS>(x, (const uint8_t*)w, (const uint16_t*)scale, nullptr, y, M, N, K, group);
    else if (kind == INT8)
        linear_int8<8>(x, (const uint8_t*)w, (const float*)scale, nullptr, y, M, N, K, group);
    else
        linear<4, 6>(x, (const uint16_t*)w, (const float*)scale, nullptr, y, M, N, K);
}

// exp of 16 floats to about 1 ulp: 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (ln 2 in
// two parts, so r is exact enough), exp(r) by its Taylor series to r^7 (|r| <= ln 2 / 2).
inline __m512 exp16(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(200.0f)), _mm512_set1_ps(-200.0f));  // beyond: inf and 0 anyway
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    for (float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    return _mm512_scalef_ps(p, n);
}

// act (M, I) = bf16(bf16(silu(gate)) * up) for gate_up (M, 2I), the roundings of PyTorch's bf16
// `F.silu(gate) * up`, silu(g) = g / (1 + exp(-g)) in fp32. I % 16 == 0.
void silu_mul(const uint16_t* gate_up, uint16_t* act, int64_t M, int64_t I) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t m = 0; m < M; m++)
        for (int64_t i = 0; i < I; i += 16) {
            const __m512 g = widen16(gate_up + m * 2 * I + i), u = widen16(gate_up + m * 2 * I + I + i);
            const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), g))));
            store16(act + m * I + i, _mm512_mul_ps(round16(silu), u));
        }
}

// out = bf16(a + b) over N elements (N % 16 == 0), as PyTorch adds bf16 tensors.
void add_rows(const uint16_t* a, const uint16_t* b, uint16_t* out, int64_t N) {
    for (int64_t i = 0; i < N; i += 16) store16(out + i, _mm512_add_ps(widen16(a + i), widen16(b + i)));
}

}  // namespace

extern "C" {
// N % 16 == 0 and K % 2 == 0; SCALE and BIAS are fp32 (N,) or null.
void janus_rows_bf16(const uint16_t* x, const uint16_t* w, const float* scale, const float* bias, uint16_t* y,
                     int64_t M, int64_t N, int64_t K) {
    linear<4, 6>(x, w, scale, bias, y, M, N, K);
}
// The int8 weight of kernels/int8.py (W, fp32 SCALE (N,)), activations in groups of GROUP;
// BIAS fp32 (N,) or null.
void janus_rows_int8(const uint16_t* x, const uint8_t* w, const float* scale, const float* bias, uint16_t* y,
                     int64_t M, int64_t N, int64_t K, int64_t group) {
    linear_int8<8>(x, w, scale, bias, y, M, N, K, group);
}
// The int4 weight of models/int4.py (QWEIGHT, SCALES, GROUP); BIAS fp32 (N,) or null; M <= 16.
void janus_rows_int4(const uint16_t* x, const uint8_t* qweight, const uint16_t* scales, const float* bias, uint16_t* y,
                     int64_t M, int64_t N, int64_t K, int64_t group) {
    linear_int4<INT4_TILE_ROWS>(x, qweight, scales, bias, y, M, N, K, group);
}

// LlamaRMSNorm in bf16 for M rows of C (C % 16 == 0): y = w * bf16(x * rsqrt(mean(x^2) + eps)),
// the mean in fp32. Serial: a row is 2-4 KB, less than a parallel region costs.
void janus_rmsnorm(const uint16_t* x, const uint16_t* w, uint16_t* y, int64_t M, int64_t C, float eps) {
    rmsnorm_rows(x, w, y, M, C, eps);
}

// One decoder block (Block.forward) for one new token in each of B rows, in one call:
//   h = x + o_proj(attend(rope(q), cache)) with q, k, v = qkv_proj(rmsnorm1(x)), rope(k) and v
//   written to the caches at SLOT (attention reads slots 0..SLOT);
//   out = h + down_proj(silu(gate) * up) with gate, up = gate_up_proj(rmsnorm2(h)).
// x and out are (B, C). The projections are all of one KIND (linear_pairs: pair blocks of bf16,
// int8 with fp32 per-output scales, or int4; GROUP the integer kernels'), without biases: qkv
// (H + 2 Hkv) D x C, o C x H D, gate_up 2 I x C, down C x I. COS, SIN, COS_ROW, the caches' STRIDE_B and STRIDE_H and VISIBLE are as in
// rope_rows and attend_rows, KC and VC point at [0, 0, 0]; SCALE is attention's.
void janus_block_step(const uint16_t* x, uint16_t* out, const uint16_t* norm1, const uint16_t* norm2, float eps,
                      const void* qkv, const void* qkv_scale, const void* o, const void* o_scale,
                      const void* gate_up, const void* gate_up_scale, const void* down, const void* down_scale,
                      int64_t kind, const uint16_t* cos, const uint16_t* sin, int64_t cos_row, uint16_t* kc,
                      uint16_t* vc, int64_t stride_b, int64_t stride_h, int64_t slot, const uint8_t* visible,
                      int64_t B, int64_t C, int64_t H, int64_t Hkv, int64_t D, int64_t I, float scale,
                      int64_t group) {
    const int64_t width = (H + 2 * Hkv) * D;
    thread_local std::vector<uint16_t> scratch;  // kept between calls: no allocation per step
    scratch.resize(B * (C + width + 2 * H * D + 3 * I + C));
    uint16_t *h = scratch.data(), *proj = h + B * C, *q = proj + B * width, *heads = q + B * H * D;
    uint16_t *gu = heads + B * H * D, *act = gu + B * 2 * I, *y = act + B * I;  // y: (B, C) an output projection

    rmsnorm_rows(x, norm1, h, B, C, eps);
    linear_pairs(h, qkv, kind, qkv_scale, proj, B, width, C, group);  // (B, (H + 2 Hkv) D): q, k, v side by side
    rope_rows(proj, proj + H * D, proj + (H + Hkv) * D, width, cos, sin, cos_row, q, kc + slot * D, vc + slot * D, B,
              H, Hkv, D, stride_b, stride_h);
    attend_rows(q, kc, vc, visible, heads, B, H, Hkv, slot + 1, D, stride_b, stride_h, scale);
    linear_pairs(heads, o, kind, o_scale, y, B, C, H * D, group);
    add_rows(x, y, out, B * C);

    rmsnorm_rows(out, norm2, h, B, C, eps);
    linear_pairs(h, gate_up, kind, gate_up_scale, gu, B, 2 * I, C, group);
    silu_mul(gu, act, B, I);
    linear_pairs(act, down, kind, down_scale, y, B, C, I, group);
    add_rows(out, y, out, B * C);
}
}
