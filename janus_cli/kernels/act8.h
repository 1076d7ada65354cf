// What the integer kernels (int4.h, int8.h) share: their int8 activations, each row of x
// rounded to int8 once per call, per group of G inputs with its own scale d = max|x| / 127, so a
// heavy input channel coarsens only its own group (|x - d * code| <= d / 2); and their tiling of
// rows. Included by rows.cpp (inside its anonymous namespace).

#include <type_traits>

// The two lines of a 128-byte weight step PREFETCH_AHEAD bytes past P, asked for now. The weights
// stream from memory once per call, and with several rows many `vpdpbusd` come between two
// weight loads: too few loads are then in flight for the hardware prefetcher to keep up (the int4
// kernel read 25 GB/s of a 33 GB/s machine at 2 rows, 11 at 8). With few rows the loads are dense
// enough, and the extra instructions cost more than they win: each kernel asks from the row
// count where it measured a gain (both builds alternating in one process; README, int4
// weights). Past the end of a weight this asks for lines nobody reads: a prefetch never faults.
constexpr int64_t PREFETCH_AHEAD = 2048;  // 1024 to 8192 measured alike
inline void prefetch_ahead(const uint8_t* p) {
    _mm_prefetch((const char*)(p + PREFETCH_AHEAD), _MM_HINT_T0);
    _mm_prefetch((const char*)(p + PREFETCH_AHEAD + 64), _MM_HINT_T0);
}

// Elements [k, k + 16) of a row of K bf16 as fp32, zeros past K.
inline __m512 widen16_upto(const uint16_t* row, int64_t k, int64_t K) {
    const int64_t valid = K - k >= 16 ? 16 : (K - k > 0 ? K - k : 0);
    const __mmask16 mask = (__mmask16)((1u << valid) - 1);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, row + k)), 16));
}

// M rows of x (M, K) -> int8 codes q (M, Kp) (zeros past K) and, per (row, group), the scale
// d and the sum of the group's codes (both (M, G)). Rounds x * (127 / max|x|) to nearest even.
inline void quantize_rows(const uint16_t* x, int64_t M, int64_t K, int64_t Kp, int64_t g, int8_t* q, float* d,
                          int32_t* xsum) {
    const int64_t G = Kp / g;
    for (int64_t m = 0; m < M; m++) {
        const uint16_t* row = x + m * K;
        for (int64_t gi = 0; gi < G; gi++) {
            __m512 top = _mm512_setzero_ps();
            for (int64_t k = gi * g; k < (gi + 1) * g; k += 16) top = _mm512_max_ps(top, _mm512_abs_ps(widen16_upto(row, k, K)));
            const float amax = _mm512_reduce_max_ps(top);
            const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
            __m512i sum = _mm512_setzero_si512();
            for (int64_t k = gi * g; k < (gi + 1) * g; k += 16) {
                const __m512i c = _mm512_cvtps_epi32(_mm512_mul_ps(widen16_upto(row, k, K), inv));
                sum = _mm512_add_epi32(sum, c);
                _mm_storeu_si128((__m128i*)(q + m * Kp + k), _mm512_cvtsepi32_epi8(c));
            }
            d[m * G + gi] = amax / 127.0f;
            xsum[m * G + gi] = _mm512_reduce_add_epi32(sum);
        }
    }
}

// The rounded rows: codes (M, Kp), scales and code sums (M, G), in this thread's buffers (kept
// between calls: no allocation per step), which every thread of the caller's loop then reads.
struct RoundedRows {
    const int8_t* codes;
    const float* scales;
    const int32_t* sums;
};

inline RoundedRows round_rows(const uint16_t* x, int64_t M, int64_t K, int64_t Kp, int64_t g) {
    thread_local std::vector<int8_t> codes;
    thread_local std::vector<float> scales;
    thread_local std::vector<int32_t> sums;
    const int64_t G = Kp / g;
    codes.resize(M * Kp);
    scales.resize(M * G);
    sums.resize(M * G);
    quantize_rows(x, M, K, Kp, g, codes.data(), scales.data(), sums.data());
    return {codes.data(), scales.data(), sums.data()};
}

// TILE(std::integral_constant<int, MC>, m) for the rows [m, m + MC) of M: MCMAX rows at a time,
// then what is left in one tile (a tile's row count is a template argument: its sums stay in
// registers).
template <int MCMAX, typename Tile>
inline void row_tiles(int64_t M, Tile&& tile) {
    static_assert(MCMAX <= 16, "the remainder cases below go to 15");
    int64_t m = 0;
    for (; m + MCMAX <= M; m += MCMAX) tile(std::integral_constant<int, MCMAX>{}, m);
    switch (M - m) {
#define ROWS(r) \
    case r:                                                            \
        if constexpr (r < MCMAX) tile(std::integral_constant<int, r>{}, m); \
        break;
        ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6) ROWS(7) ROWS(8) ROWS(9) ROWS(10) ROWS(11) ROWS(12) ROWS(13)
        ROWS(14) ROWS(15)
#undef ROWS
        default: break;
    }
}
