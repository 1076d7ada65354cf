// W8A8 linears for AVX512-VNNI: y (M, N) bf16 = (x (M, K) bf16 @ q^T) * scale (+ bias) for a few
// rows M, q the int8 codes of models/quantize.Int8Linear with one fp32 scale per output. Each
// row of x is rounded to int8 per group once per call (act8.h); `vpdpbusd` multiplies unsigned
// by signed bytes, so the weights are stored as q + 128 and each group's int32 sums start at
// -128 * sum(x codes), which leaves exactly sum(q * x codes); at a group's end they take the
// group's activation scale in fp32, at the end the output's scale. Widening int8 to bf16 for
// `vdpbf16ps` instead (the kernel this replaced) does 32 products an instruction against 64
// here, which bound a 4-image step (8 rows) by arithmetic rather than by memory.
// Layout (kernels/int8.py): blocks of 32 outputs, K' / 4 steps of 128 bytes; byte t of a step
// holds output 32 b + t / 4, input 4 o + t % 4. Included by rows.cpp (after act8.h).

// MC rows of codes XQ (row stride Kp) against one block of 32 outputs [n0, n0 + 32): its
// weight W, SCALE and BIAS (fp32, from n0); D, XSUM are the rows' (M, G) with row stride G.
template <int MC>
inline void int8_tile(const int8_t* xq, const float* d, const int32_t* xsum, int64_t Kp, int64_t g, const uint8_t* w,
                      const float* scale, const float* bias, uint16_t* y, int64_t N, int64_t n0) {
    const int64_t G = Kp / g, steps = g / 4;
    __m512 f[MC][2];
    for (int m = 0; m < MC; m++) f[m][0] = f[m][1] = _mm512_setzero_ps();
    for (int64_t gi = 0; gi < G; gi++) {
        __m512i acc[MC][2];
        for (int m = 0; m < MC; m++) acc[m][0] = acc[m][1] = _mm512_set1_epi32(-128 * xsum[m * G + gi]);
        const uint8_t* wg = w + gi * steps * 128;
        const int8_t* xg = xq + gi * g;
        for (int64_t o = 0; o < steps; o++) {
            if constexpr (MC > 4) prefetch_ahead(wg + o * 128);  // 1 to 4 rows: 0.8-0.99x, 8: 1.0-1.27x
            const __m512i w0 = _mm512_loadu_si512(wg + o * 128), w1 = _mm512_loadu_si512(wg + o * 128 + 64);
            for (int m = 0; m < MC; m++) {
                const __m512i a = _mm512_set1_epi32(*(const int32_t*)(xg + m * Kp + o * 4));  // k 4o..4o+3
                acc[m][0] = _mm512_dpbusd_epi32(acc[m][0], w0, a);
                acc[m][1] = _mm512_dpbusd_epi32(acc[m][1], w1, a);
            }
        }
        for (int m = 0; m < MC; m++) {
            const __m512 dm = _mm512_set1_ps(d[m * G + gi]);
            f[m][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[m][0]), dm, f[m][0]);
            f[m][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[m][1]), dm, f[m][1]);
        }
    }
    for (int u = 0; u < 2; u++) {
        const int64_t n = n0 + 16 * u;
        if (n >= N) break;
        const __mmask16 mask = N - n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (N - n)) - 1);
        const __m512 s = _mm512_maskz_loadu_ps(mask, scale + n);
        const __m512 b = bias ? _mm512_maskz_loadu_ps(mask, bias + n) : _mm512_setzero_ps();
        for (int m = 0; m < MC; m++)
            _mm256_mask_storeu_epi16(y + m * N + n, mask, (__m256i)_mm512_cvtneps_pbh(_mm512_fmadd_ps(f[m][u], s, b)));
    }
}

// y (M, N) = x (M, K) @ (q * scale)^T (+ bias) for the int8 weight W in the layout above, K
// padded to K' (a multiple of G, itself of 4), activations in groups of G.
template <int MCMAX>
void linear_int8(const uint16_t* x, const uint8_t* w, const float* scale, const float* bias, uint16_t* y, int64_t M,
                 int64_t N, int64_t K, int64_t g) {
    const int64_t Kp = (K + g - 1) / g * g, G = Kp / g, blocks = (N + 31) / 32;
    const RoundedRows r = round_rows(x, M, K, Kp, g);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        const uint8_t* wb = w + b * 32 * Kp;
        row_tiles<MCMAX>(M, [&](auto mc, int64_t m) {
            int8_tile<decltype(mc)::value>(r.codes + m * Kp, r.scales + m * G, r.sums + m * G, Kp, g, wb, scale,
                                           bias, y + m * N, N, b * 32);
        });
    }
}
