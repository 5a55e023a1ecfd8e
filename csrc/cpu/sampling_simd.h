// Row primitives of the sampler on raw float pointers, in AVX-512 (sampling_avx512.cpp) and
// AVX2+FMA (sampling_avx2.cpp) builds; sampling.cpp holds the portable build and picks one set
// after a run-time CPU check. No torch headers in the SIMD sources.
#pragma once
#include <cstdint>

namespace radixserve::cpu::sampling_avx512 {

// Largest value of x[0:n] (n >= 1).
float row_max(const float* x, int64_t n);
// Index of the first largest value of x[0:n].
int64_t row_argmax(const float* x, int64_t n);
// out[i] = x[i] / t (IEEE division, bit-identical to torch's x / t).
void row_div(const float* x, float t, float* out, int64_t n);
// e[i] = exp(z[i] - m) in float32; returns the sum of e in double.
double row_exp_sum(const float* z, float m, float* e, int64_t n);
// Writes the ids i with z[i] >= thr to ids (ascending), returns their count; *next_max gets the
// largest z below thr (-inf when there is none).
int64_t row_gather_ge(const float* z, int64_t n, float thr, int32_t* ids, float* next_max);
// Sums of consecutive blocks of `block` weights, each ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)) in
// double, lane l being the sequential sum of the block's elements j % 8 == l (block % 8 == 0).
void block_sums(const float* w, int64_t n, int64_t block, double* sums);
// out[i] = x[i] where bit i % 32 of mask[i / 32] is set (a packed token bitmask: the grammar
// allows token i), -inf elsewhere; out may be x. mask holds ceil(n / 32) words.
void row_apply_bitmask(const float* x, const int32_t* mask, float* out, int64_t n);

}  // namespace radixserve::cpu::sampling_avx512

namespace radixserve::cpu::sampling_avx2 {  // the same contracts, AVX2+FMA build

float row_max(const float* x, int64_t n);
int64_t row_argmax(const float* x, int64_t n);
void row_div(const float* x, float t, float* out, int64_t n);
double row_exp_sum(const float* z, float m, float* e, int64_t n);
int64_t row_gather_ge(const float* z, int64_t n, float thr, int32_t* ids, float* next_max);
void block_sums(const float* w, int64_t n, int64_t block, double* sums);
void row_apply_bitmask(const float* x, const int32_t* mask, float* out, int64_t n);

}  // namespace radixserve::cpu::sampling_avx2
