// The vectorised attend kernel (see AttendWork in attention.h), written once over simd.h and
// compiled by attention_avx2.cpp and attention_avx512.cpp. Include after simd.h.
#pragma once

#include <type_traits>

#include "cpu/attention.h"

namespace {

using radixserve::cpu::AttendWork;

constexpr int kKeyBlock = radixserve::cpu::kAttendKeyBlock;
static_assert(kKeyBlock % kLanes == 0, "key block must be whole vectors");

// Scores of one query against kLanes keys at once: one accumulator per key, then a single
// transpose-and-add instead of a horizontal reduction per key. Key rows are fp32 or bf16 (TR):
// bf16 is widened in registers as it is loaded (no converted copy to store and reload).
template <typename TR>
inline VF dot_group(const float* q, const TR* const* k, int D) {
  VF a[kLanes];
  for (int n = 0; n < kLanes; ++n) a[n] = vzero();
  for (int c = 0; c < D; c += kLanes) {
    const VF qc = vload(q + c);
    for (int n = 0; n < kLanes; ++n) a[n] = vfma(qc, vload(k[n] + c), a[n]);
  }
  return vtranspose_sum(a);
}

// acc[c0 : c0 + N*kLanes] = acc * alpha + sum_j p[j] * v[j][...]: N independent chains held in
// registers while streaming over the keys.
template <int N, typename TR>
inline void accumulate_group(float* acc, int c0, float alpha, const float* p,
                             const TR* const* v, int j0, int j1) {
  VF a[N];
  const VF va = vset1(alpha);
  for (int n = 0; n < N; ++n) a[n] = vmul(vload(acc + c0 + n * kLanes), va);
  for (int j = j0; j < j1; ++j) {
    const VF pj = vset1(p[j]);
    const TR* vr = v[j] + c0;
    for (int n = 0; n < N; ++n) a[n] = vfma(pj, vload(vr + n * kLanes), a[n]);
  }
  for (int n = 0; n < N; ++n) vstore(acc + c0 + n * kLanes, a[n]);
}

template <typename TR>
inline void accumulate(float* acc, int D, float alpha, const float* p, const TR* const* v,
                       int j0, int j1) {
  int c = 0;
  for (; c + 8 * kLanes <= D; c += 8 * kLanes) accumulate_group<8>(acc, c, alpha, p, v, j0, j1);
  for (; c + 4 * kLanes <= D; c += 4 * kLanes) accumulate_group<4>(acc, c, alpha, p, v, j0, j1);
  for (; c < D; c += kLanes) accumulate_group<1>(acc, c, alpha, p, v, j0, j1);
}

// A bf16 K/V row read by more query rows than this is widened to fp32 once (a copy in kvbuf);
// fewer widen it in registers at each use (measured).
constexpr int64_t kWidenOnceRows = 8;

// Row of the block as the kernel reads it (TR): the cache row itself when TR is the cache's
// type, else an fp32 copy in `buf`.
template <typename TR, typename TKV>
inline const TR* block_row(const TKV* row, float* buf, int D) {
  if constexpr (std::is_same_v<TR, TKV>) {
    return row;
  } else {
    for (int c = 0; c < D; c += kLanes) vstore(buf + c, vload(row + c));
    return buf;
  }
}

// The kernel, reading K/V rows as TR (see block_row).
template <typename TR, typename T, typename TKV>
void attend_rows(const AttendWork<T, TKV>& w) {
  const int G = w.num_heads;
  const int D = w.head_dim;
  const int64_t rows = w.n_q * G;
  const VF sc = vset1(w.scale);
  for (int64_t r = 0; r < rows; ++r) {
    w.m[r] = -INFINITY;
    w.l[r] = 0.0f;
    const T* qr = w.q + (r / G) * w.q_stride + (r % G) * D;
    float* qb = w.qbuf + r * D;
    for (int c = 0; c < D; c += kLanes) {
      vstore(w.acc + r * D + c, vzero());
      vstore(qb + c, vmul(vload(qr + c), sc));
    }
  }
  // Keys any query of this item can see.
  int64_t kb = max64(w.key_begin, 0);
  if (w.window > 0) kb = max64(kb, w.pos0 - w.window + 1);
  const int64_t ke = min64(w.key_end, w.pos0 + w.n_q);
  const int row_bytes = D * static_cast<int>(sizeof(TKV));

  const TR* kr[kKeyBlock];
  const TR* vr[kKeyBlock];
  alignas(64) float s[kKeyBlock];
  for (int64_t k = kb; k < min64(ke, kb + kKeyBlock); ++k) {
    const int64_t off = static_cast<int64_t>(w.slots[k]) * w.slot_stride + w.head_off;
    prefetch_bytes(w.k_cache + off, row_bytes);
    prefetch_bytes(w.v_cache + off, row_bytes);
  }
  for (int64_t k0 = kb; k0 < ke; k0 += kKeyBlock) {
    const int nk = static_cast<int>(min64(kKeyBlock, ke - k0));
    // Slots are scattered, so the hardware prefetcher cannot guess the next block's rows.
    for (int64_t k = k0 + kKeyBlock; k < min64(ke, k0 + 2 * kKeyBlock); ++k) {
      const int64_t off = static_cast<int64_t>(w.slots[k]) * w.slot_stride + w.head_off;
      prefetch_bytes(w.k_cache + off, row_bytes);
      prefetch_bytes(w.v_cache + off, row_bytes);
    }
    for (int j = 0; j < nk; ++j) {
      const int64_t off = static_cast<int64_t>(w.slots[k0 + j]) * w.slot_stride + w.head_off;
      kr[j] = block_row<TR>(w.k_cache + off, w.kvbuf + j * D, D);
      vr[j] = block_row<TR>(w.v_cache + off, w.kvbuf + (kKeyBlock + j) * D, D);
    }
    for (int j = nk; j < kKeyBlock; ++j) kr[j] = vr[j] = kr[0];  // scored, then masked out
    for (int64_t i = 0; i < w.n_q; ++i) {
      const int64_t pos = w.pos0 + i;
      int64_t lo = k0;
      if (w.window > 0) lo = max64(lo, pos - w.window + 1);
      const int64_t hi = min64(k0 + nk, pos + 1);
      if (lo >= hi) continue;
      const int j0 = static_cast<int>(lo - k0);
      const int j1 = static_cast<int>(hi - k0);
      const int jg0 = j0 / kLanes * kLanes;
      for (int g = 0; g < G; ++g) {
        const int64_t r = i * G + g;
        const float* qb = w.qbuf + r * D;
        for (int j = 0; j < jg0; ++j) s[j] = -INFINITY;
        for (int j = jg0; j < j1; j += kLanes) vstore(s + j, dot_group(qb, kr + j, D));
        for (int j = jg0; j < j0; ++j) s[j] = -INFINITY;
        for (int j = j1; j < kKeyBlock; ++j) s[j] = -INFINITY;
        VF mx = vload(s);
        for (int j = kLanes; j < kKeyBlock; j += kLanes) mx = vmax(mx, vload(s + j));
        const float bmax = vhmax(mx);
        const float m_new = w.m[r] > bmax ? w.m[r] : bmax;
        const float alpha = w.m[r] == -INFINITY ? 0.0f : std::exp(w.m[r] - m_new);
        const VF mv = vset1(m_new);
        VF psum = vzero();
        for (int j = 0; j < kKeyBlock; j += kLanes) {
          const VF p = vexp(vsub(vload(s + j), mv));
          vstore(s + j, p);
          psum = vadd(psum, p);
        }
        w.m[r] = m_new;
        w.l[r] = w.l[r] * alpha + vsum(psum);
        accumulate(w.acc + r * D, D, alpha, s, vr, j0, j1);
      }
    }
  }
}

template <typename T, typename TKV>
void attend_simd(const AttendWork<T, TKV>& w) {
  if (std::is_same_v<TKV, float> || w.n_q * w.num_heads <= kWidenOnceRows) {
    attend_rows<TKV>(w);
  } else {
    attend_rows<float>(w);
  }
}

}  // namespace
