// W4A8 linears for AVX512-VNNI: y (M, N) bf16 = x (M, K) bf16 @ w^T (+ bias) for a few rows M,
// w the int4 weight of models/int4.py (blocks of 32 outputs, 8 k per 128 bytes, nibbles; bf16
// scale and offset per output and group along K). Each row of x is rounded to int8 per group
// once per call (act8.h); `vpdpbusd` sums 4 code x activation byte products per lane, 16
// outputs per instruction, in int32; at a group's end the sums take scale * d and the offset
// term offset * d * sum(x codes) in fp32. Included by rows.cpp (inside its anonymous
// namespace, after act8.h).

// MC rows of codes XQ (row stride Kp) against one block of 32 outputs [n0, n0 + 32) (its codes
// W and scales SC); D, XSUM are the rows' (M, G) with row stride G.
template <int MC>
inline void int4_tile(const int8_t* xq, const float* d, const int32_t* xsum, int64_t Kp, int64_t g, const uint8_t* w,
                      const uint16_t* sc, const float* bias, uint16_t* y, int64_t N, int64_t n0) {
    const int64_t G = Kp / g, octets = g / 8;
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    __m512 f[MC][2];
    for (int m = 0; m < MC; m++) f[m][0] = f[m][1] = _mm512_setzero_ps();
    for (int64_t gi = 0; gi < G; gi++) {
        __m512i acc[MC][2];
        for (int m = 0; m < MC; m++) acc[m][0] = acc[m][1] = _mm512_setzero_si512();
        const uint8_t* wg = w + gi * octets * 128;
        const int8_t* xg = xq + gi * g;
        for (int64_t o = 0; o < octets; o++) {
            if constexpr (MC >= 2) prefetch_ahead(wg + o * 128);  // 1 row: 0.95-0.98x, 2 to 8: 1.1-1.5x
            const __m512i p0 = _mm512_loadu_si512(wg + o * 128), p1 = _mm512_loadu_si512(wg + o * 128 + 64);
            const __m512i lo0 = _mm512_and_si512(p0, nibble), hi0 = _mm512_and_si512(_mm512_srli_epi16(p0, 4), nibble);
            const __m512i lo1 = _mm512_and_si512(p1, nibble), hi1 = _mm512_and_si512(_mm512_srli_epi16(p1, 4), nibble);
            for (int m = 0; m < MC; m++) {
                const int32_t* xm = (const int32_t*)(xg + m * Kp + o * 8);  // k 8o..8o+3, then 8o+4..8o+7
                const __m512i a = _mm512_set1_epi32(xm[0]), b = _mm512_set1_epi32(xm[1]);
                acc[m][0] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc[m][0], lo0, a), hi0, b);
                acc[m][1] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc[m][1], lo1, a), hi1, b);
            }
        }
        const uint16_t* sg = sc + gi * 64;  // 32 scales, then 32 offsets
        for (int u = 0; u < 2; u++) {
            const __m512 s = widen16(sg + u * 16), off = widen16(sg + 32 + u * 16);
            for (int m = 0; m < MC; m++) {
                const float dm = d[m * G + gi];
                const __m512 sd = _mm512_mul_ps(s, _mm512_set1_ps(dm));
                f[m][u] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[m][u]), sd, f[m][u]);
                f[m][u] = _mm512_fmadd_ps(off, _mm512_set1_ps(dm * (float)xsum[m * G + gi]), f[m][u]);
            }
        }
    }
    for (int u = 0; u < 2; u++) {
        const int64_t n = n0 + 16 * u;
        if (n >= N) break;
        const __mmask16 mask = N - n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (N - n)) - 1);
        const __m512 bv = bias ? _mm512_maskz_loadu_ps(mask, bias + n) : _mm512_setzero_ps();
        for (int m = 0; m < MC; m++)
            _mm256_mask_storeu_epi16(y + m * N + n, mask, (__m256i)_mm512_cvtneps_pbh(_mm512_add_ps(f[m][u], bv)));
    }
}

// Rows per tile: at 8, a tile's 16 int32 sums and 16 fp32 totals fill the 32 vector registers
// before the unpacked nibbles and broadcasts, and the compiler spills in the inner loop (8 rows of
// gate_up, 11264 x 2048, in cache: 0.91 ms, against 0.56 for two tiles of 4, which unpack each
// block's nibbles twice).
constexpr int INT4_TILE_ROWS = 4;

// y (M, N) = x (M, K) @ w^T (+ bias) for the int4 weight W, SC of group G (a multiple of 8).
template <int MCMAX>
void linear_int4(const uint16_t* x, const uint8_t* w, const uint16_t* sc, const float* bias, uint16_t* y, int64_t M,
                 int64_t N, int64_t K, int64_t g) {
    const int64_t Kp = (K + g - 1) / g * g, G = Kp / g, blocks = (N + 31) / 32;
    const RoundedRows r = round_rows(x, M, K, Kp, g);
    const int8_t* xq = r.codes;
    const float* d = r.scales;
    const int32_t* xsum = r.sums;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        const uint8_t* wb = w + b * Kp * 16;  // 32 outputs x Kp nibbles
        const uint16_t* sb = sc + b * G * 64;
        row_tiles<MCMAX>(M, [&](auto mc, int64_t m) {
            int4_tile<decltype(mc)::value>(xq + m * Kp, d + m * G, xsum + m * G, Kp, g, wb, sb, bias, y + m * N, N,
                                           b * 32);
        });
    }
}
