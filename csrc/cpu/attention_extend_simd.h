// The vectorised extend (prefill) kernel (see ExtendKernels in attention.h), written once
// over simd.h and compiled by attention_avx2.cpp and attention_avx512.cpp. Include after simd.h.
//
// Flash-attention style tiles. The item's query rows (query i, head g) lie across the vector
// lanes: Q^T, the scores S^T and the accumulator acc^T are [dim or key][row] panels, so
//  - Q.K^T and P.V are register-blocked micro-GEMMs that broadcast one K or V element and
//    multiply it into kRV row vectors (no transposes and no horizontal sums anywhere),
//  - the online softmax (row max, exp, row sum, rescale) runs kLanes rows per instruction,
//  - each block of kExtendKeyBlock keys is gathered through the slot table (and widened from
//    bfloat16) once into a small contiguous fp32 buffer, then read by every row of the item.
// Rows go through in groups of up to kRV vectors; each group's panels are contiguous so a
// group's working set (Q^T, acc^T and S^T panels, the K and V blocks) stays in L1. The causal
// and sliding-window masks are applied only to the blocks that cross a group's diagonal, and
// each group skips the keys none of its rows can see.
#pragma once

// As in simd.h: GCC 12 also reports a false "used uninitialized" inside its own AVX-512 headers
// here (GCC bug 105593, the _mm512_undefined_ps of _mm512_max_ps).
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "cpu/attention.h"

namespace {

using radixserve::cpu::AttendWork;

constexpr int kExtBlk = radixserve::cpu::kExtendKeyBlock;
constexpr int kRV = 3;                    // row vectors per micro-kernel pass
constexpr int kKJ = kLanes == 8 ? 4 : 8;  // keys per Q.K^T pass: kKJ * kRV accumulators
constexpr int kVC = kLanes == 8 ? 4 : 8;  // value dims per P.V pass: kVC * kRV accumulators
static_assert(kExtBlk % kKJ == 0, "a key block must be whole Q.K^T passes");

inline int ext_min(int a, int b) { return a < b ? a : b; }

// st[j][0 : R*kLanes] = sum_d kb[j][d] * qt[d][0 : R*kLanes] for kKJ keys j (panels `ld` wide).
template <int R>
inline void qk_pass(const float* qt, int ld, const float* kb, int D, float* st) {
  VF a[kKJ][R];
  for (int j = 0; j < kKJ; ++j)
    for (int v = 0; v < R; ++v) a[j][v] = vzero();
  // do-while (D >= 1): with a zero-trip path GCC keeps `a` on the stack and copies it twice.
  int d = 0;
  do {
    VF q[R];
    for (int v = 0; v < R; ++v) q[v] = vload(qt + d * ld + v * kLanes);
    for (int j = 0; j < kKJ; ++j) {
      const VF k = vset1(kb[j * D + d]);
      for (int v = 0; v < R; ++v) a[j][v] = vfma(k, q[v], a[j][v]);
    }
  } while (++d < D);
  for (int j = 0; j < kKJ; ++j)
    for (int v = 0; v < R; ++v) vstore(st + j * ld + v * kLanes, a[j][v]);
}

// at[c][0 : R*kLanes] = at[c] * alpha + sum_{j < nj} vb[j][c] * pt[j][0 : R*kLanes] for C dims c
// (nj >= 1).
template <int R, int C>
inline void pv_pass(float* at, int ld, const float* alpha, const float* pt, const float* vb,
                    int D, int nj) {
  VF a[C][R];
  for (int v = 0; v < R; ++v) {
    const VF al = vload(alpha + v * kLanes);
    for (int c = 0; c < C; ++c) a[c][v] = vmul(vload(at + c * ld + v * kLanes), al);
  }
  int j = 0;  // nj >= 1; do-while as in qk_pass
  do {
    VF p[R];
    for (int v = 0; v < R; ++v) p[v] = vload(pt + j * ld + v * kLanes);
    for (int c = 0; c < C; ++c) {
      const VF x = vset1(vb[j * D + c]);
      for (int v = 0; v < R; ++v) a[c][v] = vfma(x, p[v], a[c][v]);
    }
  } while (++j < nj);
  for (int c = 0; c < C; ++c)
    for (int v = 0; v < R; ++v) vstore(at + c * ld + v * kLanes, a[c][v]);
}

template <int R>
inline void pv_all_dims(float* at, int ld, const float* alpha, const float* pt, const float* vb,
                        int D, int nj) {
  int c = 0;
  for (; c + kVC <= D; c += kVC) pv_pass<R, kVC>(at + c * ld, ld, alpha, pt, vb + c, D, nj);
  for (; c < D; ++c) pv_pass<R, 1>(at + c * ld, ld, alpha, pt, vb + c, D, nj);
}

// Scores of keys [j0, j1) of the block for one group of R row vectors.
template <int R>
inline void qk_keys(const float* qt, int ld, const float* kb, int D, float* st, int j0, int j1) {
  for (int j = j0; j < j1; j += kKJ) qk_pass<R>(qt, ld, kb + j * D, D, st + j * ld);
}

// dst[d * ld + i] = src[i][d] * scale for 8 rows i and every d < D.
template <typename T>
inline void rows_to_panel(const T* const* src, int D, float scale, float* dst, int ld) {
  const __m256 sc = _mm256_set1_ps(scale);
  int d = 0;
  for (; d + 8 <= D; d += 8) {
    __m256 r[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_mul_ps(load8(src[i] + d), sc);
    transpose8(r);
    for (int c = 0; c < 8; ++c) _mm256_storeu_ps(dst + (d + c) * ld, r[c]);
  }
  for (; d < D; ++d)
    for (int i = 0; i < 8; ++i) dst[d * ld + i] = to_f32(src[i][d]) * scale;
}

inline void store8(float* p, __m256 a) { _mm256_storeu_ps(p, a); }
inline void store8(uint16_t* p, __m256 a) { store_bf16x8(p, a); }

// dst[i][d] = src[d * ld + i] * scale[i] for the first n (<= 8) of 8 panel rows, every d < D.
template <typename T>
inline void panel_to_rows(const float* src, int ld, int D, const float* scale, T* const* dst,
                          int n) {
  int d = 0;
  for (; d + 8 <= D; d += 8) {
    __m256 r[8];
    for (int c = 0; c < 8; ++c) r[c] = _mm256_loadu_ps(src + (d + c) * ld);
    transpose8(r);
    for (int i = 0; i < n; ++i) store8(dst[i] + d, _mm256_mul_ps(r[i], _mm256_set1_ps(scale[i])));
  }
  for (; d < D; ++d)
    for (int i = 0; i < n; ++i) store_f32(dst[i] + d, src[d * ld + i] * scale[i]);
}

inline void widen_row(const float* src, float* dst, int D) {
  int d = 0;
  for (; d + kLanes <= D; d += kLanes) vstore(dst + d, vload(src + d));
  for (; d < D; ++d) dst[d] = src[d];
}
inline void widen_row(const uint16_t* src, float* dst, int D) {
  int d = 0;
  for (; d + kLanes <= D; d += kLanes) vstore(dst + d, vload(src + d));
  for (; d < D; ++d) dst[d] = bf16_to_f32(src[d]);
}

// One group of R row vectors against keys [j0, j1) of the current block (j0, j1 multiples of
// kKJ): scores, online softmax, then acc^T += P.V. `masked` when some key of the range is
// hidden from some row of the group; lo/hi hold each row's first and last visible key.
template <int R>
void extend_group(const float* qt, float* st, float* at, float* m, float* l, float* alpha,
                  const float* lo, const float* hi, const float* kb, const float* vb, int D,
                  int64_t k0, int j0, int j1, bool masked) {
  constexpr int ld = R * kLanes;
  qk_keys<R>(qt, ld, kb, D, st, j0, j1);
  const VF neg_inf = vset1(-INFINITY);
  for (int v = 0; v < R; ++v) {
    float* s = st + v * kLanes;
    VF mx = neg_inf;
    if (masked) {
      const VF lov = vload(lo + v * kLanes), hiv = vload(hi + v * kLanes);
      for (int j = j0; j < j1; ++j) {
        const VF key = vset1(static_cast<float>(k0 + j));
        // Visible iff lo <= key <= hi: hidden ones become -inf (exp gives exactly 0).
        VF x = vselect_lt(key, lov, neg_inf, vload(s + j * ld));
        x = vselect_lt(hiv, key, neg_inf, x);
        vstore(s + j * ld, x);
        mx = vmax(mx, x);
      }
    } else {
      for (int j = j0; j < j1; ++j) mx = vmax(mx, vload(s + j * ld));
    }
    const VF m_old = vload(m + v * kLanes);
    const VF m_new = vmax(m_old, mx);
    // A row that has seen no key yet keeps m = -inf; subtracting 0 instead keeps exp at 0.
    const VF m_sub = vselect_lt(m_new, vset1(-3.0e38f), vzero(), m_new);
    const VF al = vexp(vsub(m_old, m_sub));
    VF sum = vzero();
    for (int j = j0; j < j1; ++j) {
      const VF p = vexp(vsub(vload(s + j * ld), m_sub));
      vstore(s + j * ld, p);
      sum = vadd(sum, p);
    }
    vstore(m + v * kLanes, m_new);
    vstore(l + v * kLanes, vfma(vload(l + v * kLanes), al, sum));
    vstore(alpha + v * kLanes, al);
  }
  pv_all_dims<R>(at, ld, alpha, st + j0 * ld, vb + j0 * D, D, j1 - j0);
}

template <typename T, typename TKV>
void extend_simd(const AttendWork<T, TKV>& w, T* out) {
  const int G = w.num_heads;
  const int D = w.head_dim;
  const int rows = static_cast<int>(w.n_q) * G;
  const int nvec = (rows + kLanes - 1) / kLanes;
  const int rp = nvec * kLanes;
  // Scratch (sizes: extend_qbuf_floats / extend_kvbuf_floats). Row r of the item is lane
  // r % kLanes of vector r / kLanes; vectors are grouped kRV at a time and each group's
  // Q^T, S^T and acc^T panels are contiguous ([D or key][group width]).
  float* qt = w.qbuf;                 // [rp * D]
  float* kb = w.kvbuf;                // [kExtBlk][D]: the key block in fp32
  float* vb = kb + kExtBlk * D;       // [kExtBlk][D]
  float* st = vb + kExtBlk * D;       // [rp * kExtBlk]
  float* at = st + rp * kExtBlk;      // [rp * D]
  float* mrow = at + rp * D;          // [rp] running max
  float* lrow = mrow + rp;            // [rp] running sum
  float* arow = lrow + rp;            // [rp] this block's rescale factor
  float* lo = arow + rp;              // [rp] first visible key (positions are exact in fp32
  float* hi = lo + rp;                // [rp] last visible key   below 2^24 tokens)

  int64_t kbeg = max64(w.key_begin, 0);
  if (w.window > 0) kbeg = max64(kbeg, w.pos0 - w.window + 1);
  const int64_t kend = min64(w.key_end, w.pos0 + w.n_q);
  for (int g0 = 0; g0 < nvec; g0 += kRV) {
    const int width = ext_min(kRV, nvec - g0) * kLanes;
    float* qg = qt + g0 * kLanes * D;
    for (int r8 = 0; r8 < width; r8 += 8) {
      const T* src[8];
      for (int i = 0; i < 8; ++i) {
        // Padding rows copy the last real row: finite, never read back.
        const int r = ext_min(g0 * kLanes + r8 + i, rows - 1);
        src[i] = w.q + (r / G) * w.q_stride + (r % G) * D;
      }
      rows_to_panel(src, D, w.scale, qg + r8, width);
    }
  }
  for (int i = 0; i < rp * D; i += kLanes) vstore(at + i, vzero());
  for (int r = 0; r < rp; ++r) {
    const int64_t pos = w.pos0 + ext_min(r, rows - 1) / G;
    int64_t first = kbeg;
    if (w.window > 0) first = max64(first, pos - w.window + 1);
    lo[r] = static_cast<float>(first);
    hi[r] = static_cast<float>(min64(pos, kend - 1));
    mrow[r] = -INFINITY;
    lrow[r] = 0.0f;
  }

  const int row_bytes = D * static_cast<int>(sizeof(TKV));
  for (int64_t k = kbeg; k < min64(kend, kbeg + kExtBlk); ++k) {
    const int64_t off = static_cast<int64_t>(w.slots[k]) * w.slot_stride + w.head_off;
    prefetch_bytes(w.k_cache + off, row_bytes);
    prefetch_bytes(w.v_cache + off, row_bytes);
  }
  for (int64_t k0 = kbeg; k0 < kend; k0 += kExtBlk) {
    const int nk = static_cast<int>(min64(kExtBlk, kend - k0));
    // Slots are scattered, so the hardware prefetcher cannot guess the next block's rows.
    for (int64_t k = k0 + kExtBlk; k < min64(kend, k0 + 2 * kExtBlk); ++k) {
      const int64_t off = static_cast<int64_t>(w.slots[k]) * w.slot_stride + w.head_off;
      prefetch_bytes(w.k_cache + off, row_bytes);
      prefetch_bytes(w.v_cache + off, row_bytes);
    }
    for (int j = 0; j < nk; ++j) {
      const int64_t off = static_cast<int64_t>(w.slots[k0 + j]) * w.slot_stride + w.head_off;
      widen_row(w.k_cache + off, kb + j * D, D);
      widen_row(w.v_cache + off, vb + j * D, D);
    }
    const int nk_pass = (nk + kKJ - 1) / kKJ * kKJ;
    for (int j = nk; j < nk_pass; ++j)  // scored, then masked: finite, so 0 * v stays 0
      for (int d = 0; d < D; ++d) kb[j * D + d] = vb[j * D + d] = 0.0f;
    for (int g0 = 0; g0 < nvec; g0 += kRV) {
      const int nv = ext_min(kRV, nvec - g0);
      const int r0 = g0 * kLanes, r1 = ext_min(rows, r0 + nv * kLanes) - 1;
      // Rows are in position order: the group sees keys [lo[r0], hi[r1]] at most.
      const int64_t first = static_cast<int64_t>(lo[r0]), last = static_cast<int64_t>(hi[r1]);
      const int j0 = static_cast<int>(max64(first - k0, 0)) / kKJ * kKJ;
      const int j1 = static_cast<int>(min64(last - k0 + 1, nk_pass) + kKJ - 1) / kKJ * kKJ;
      if (last < k0 || first >= k0 + nk || j0 >= j1) continue;
      // Every key of [j0, j1) is visible to every row unless it crosses some row's bounds.
      const bool masked = k0 + j0 < static_cast<int64_t>(lo[r1]) ||
                          k0 + j1 - 1 > static_cast<int64_t>(hi[r0]);
      float* qg = qt + r0 * D;
      float* sg = st + r0 * kExtBlk;
      float* ag = at + r0 * D;
      switch (nv) {
        case 3:
          extend_group<3>(qg, sg, ag, mrow + r0, lrow + r0, arow + r0, lo + r0, hi + r0, kb, vb,
                          D, k0, j0, j1, masked);
          break;
        case 2:
          extend_group<2>(qg, sg, ag, mrow + r0, lrow + r0, arow + r0, lo + r0, hi + r0, kb, vb,
                          D, k0, j0, j1, masked);
          break;
        default:
          extend_group<1>(qg, sg, ag, mrow + r0, lrow + r0, arow + r0, lo + r0, hi + r0, kb, vb,
                          D, k0, j0, j1, masked);
          break;
      }
    }
  }

  // Each row's acc / l (0 for a row that saw no key), back to rows, into out.
  for (int r = 0; r < rows; ++r) arow[r] = lrow[r] > 0.0f ? 1.0f / lrow[r] : 0.0f;
  for (int g0 = 0; g0 < nvec; g0 += kRV) {
    const int width = ext_min(kRV, nvec - g0) * kLanes;
    for (int r8 = 0; r8 < width; r8 += 8) {
      const int r0 = g0 * kLanes + r8;
      const int n = ext_min(8, rows - r0);
      if (n <= 0) break;
      T* dst[8];
      for (int i = 0; i < n; ++i) dst[i] = out + ((r0 + i) / G) * w.q_stride + ((r0 + i) % G) * D;
      panel_to_rows(at + g0 * kLanes * D + r8, width, D, arow + r0, dst, n);
    }
  }
}

}  // namespace
