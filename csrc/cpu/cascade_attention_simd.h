// The vectorised prefix kernel of cascade attention (see PrefixKernels in
// cascade_attention.h), written once over simd.h and compiled by cascade_attention_avx2.cpp and
// cascade_attention_avx512.cpp. Include after simd.h.
//
// Per block of kBlk keys: K is converted to fp32 and transposed ([D][kBlk]) and V converted
// ([kBlk][D]) once; then for every query row the scores are a register-blocked product (kQR
// rows x kBlk keys per pass), the online-softmax state is updated, and the weighted values are
// accumulated kPR rows x kPC vectors at a time. Rows go through in chunks of kChunk so their
// scores stay on the stack.
#pragma once

#include "cpu/cascade_attention.h"

namespace {

using radixserve::cpu::AttendWork;

constexpr int kBlk = radixserve::cpu::kAttendKeyBlock;
constexpr int kNV = kBlk / kLanes;             // vectors per score row
constexpr int kQR = kLanes == 8 ? 3 : 8;       // score rows per pass: kQR * kNV accumulators
constexpr int kPR = 4;                         // PV rows per pass
constexpr int kPC = kLanes == 8 ? 2 : 4;       // PV vectors per pass
constexpr int kChunk = 24;                     // rows whose scores are held at once
static_assert(kBlk % kLanes == 0, "key block must be whole vectors");

inline int64_t cmin64(int64_t a, int64_t b) { return a < b ? a : b; }

inline void cprefetch(const void* p, int bytes) {
  const char* c = static_cast<const char*>(p);
  for (int o = 0; o < bytes; o += 64) _mm_prefetch(c + o, _MM_HINT_T0);
}

// s[r][0:kBlk] = q[r] . kt[:, 0:kBlk] for R rows (q rows D floats apart).
template <int R>
inline void block_scores(const float* q, const float* kt, int D, float* s) {
  VF a[R][kNV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < kNV; ++v) a[r][v] = vzero();
  for (int d = 0; d < D; ++d) {
    VF qv[R];
    for (int r = 0; r < R; ++r) qv[r] = vset1(q[r * D + d]);
    for (int v = 0; v < kNV; ++v) {
      const VF kv = vload(kt + d * kBlk + v * kLanes);
      for (int r = 0; r < R; ++r) a[r][v] = vfma(qv[r], kv, a[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < kNV; ++v) vstore(s + r * kBlk + v * kLanes, a[r][v]);
}

// acc[r][c0 : c0 + C*kLanes] = acc * alpha[r] + sum_{j < nk} p[r][j] * vb[j][...] for R rows.
template <int R, int C>
inline void block_pv(float* acc, int D, int c0, const float* alpha, const float* p,
                     const float* vb, int nk) {
  VF a[R][C];
  for (int r = 0; r < R; ++r) {
    const VF al = vset1(alpha[r]);
    for (int c = 0; c < C; ++c) a[r][c] = vmul(vload(acc + r * D + c0 + c * kLanes), al);
  }
  for (int j = 0; j < nk; ++j) {
    VF vv[C];
    for (int c = 0; c < C; ++c) vv[c] = vload(vb + j * D + c0 + c * kLanes);
    for (int r = 0; r < R; ++r) {
      const VF pj = vset1(p[r * kBlk + j]);
      for (int c = 0; c < C; ++c) a[r][c] = vfma(pj, vv[c], a[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) vstore(acc + r * D + c0 + c * kLanes, a[r][c]);
}

template <int R>
inline void block_pv_rows(float* acc, int D, const float* alpha, const float* p, const float* vb,
                          int nk) {
  int c = 0;
  for (; c + kPC * kLanes <= D; c += kPC * kLanes) block_pv<R, kPC>(acc, D, c, alpha, p, vb, nk);
  for (; c < D; c += kLanes) block_pv<R, 1>(acc, D, c, alpha, p, vb, nk);
}

inline void load_row(const float* src, float* dst, int D) {
  for (int c = 0; c < D; c += kLanes) vstore(dst + c, vload(src + c));
}
inline void load_row(const uint16_t* src, float* dst, int D) {
  for (int c = 0; c < D; c += kLanes) vstore(dst + c, vload(src + c));
}

template <typename T, typename TKV>
void prefix_simd(const AttendWork<T, TKV>& w) {
  const int G = w.num_heads;
  const int D = w.head_dim;
  const int64_t rows = w.n_q * G;
  const VF sc = vset1(w.scale);
  for (int64_t r = 0; r < rows; ++r) {
    w.m[r] = -INFINITY;
    w.l[r] = 0.0f;
    const T* qr = w.q + (r / G) * w.q_stride + (r % G) * D;
    for (int c = 0; c < D; c += kLanes) {
      vstore(w.acc + r * D + c, vzero());
      vstore(w.qbuf + r * D + c, vmul(vload(qr + c), sc));
    }
  }
  const int64_t kb = w.key_begin > 0 ? w.key_begin : 0;
  const int64_t ke = w.key_end;
  const int row_bytes = D * static_cast<int>(sizeof(TKV));
  float* kt = w.kvbuf;              // [D][kBlk]
  float* vb = w.kvbuf + kBlk * D;   // [kBlk][D]
  alignas(64) float s[kChunk * kBlk];
  float alpha[kChunk];
  // Slots are scattered: the hardware prefetcher cannot guess the rows, so fetch the first
  // block now and each next block while the current one is computed.
  for (int64_t k = kb; k < cmin64(ke, kb + kBlk); ++k) {
    const int64_t off = static_cast<int64_t>(w.slots[k]) * w.slot_stride + w.head_off;
    cprefetch(w.k_cache + off, row_bytes);
    cprefetch(w.v_cache + off, row_bytes);
  }
  for (int64_t k0 = kb; k0 < ke; k0 += kBlk) {
    const int nk = static_cast<int>(cmin64(kBlk, ke - k0));
    for (int64_t k = k0 + kBlk; k < cmin64(ke, k0 + 2 * kBlk); ++k) {
      const int64_t off = static_cast<int64_t>(w.slots[k]) * w.slot_stride + w.head_off;
      cprefetch(w.k_cache + off, row_bytes);
      cprefetch(w.v_cache + off, row_bytes);
    }
    for (int j = 0; j < nk; ++j) {
      const int64_t off = static_cast<int64_t>(w.slots[k0 + j]) * w.slot_stride + w.head_off;
      float* tmp = vb + j * D;  // K row in V's place first, transposed out, then V itself
      load_row(w.k_cache + off, tmp, D);
      for (int d = 0; d < D; ++d) kt[d * kBlk + j] = tmp[d];
      load_row(w.v_cache + off, tmp, D);
    }
    for (int j = nk; j < kBlk; ++j)
      for (int d = 0; d < D; ++d) kt[d * kBlk + j] = 0.0f;
    for (int64_t r0 = 0; r0 < rows; r0 += kChunk) {
      const int n = static_cast<int>(cmin64(kChunk, rows - r0));
      const float* qc = w.qbuf + r0 * D;
      int r = 0;
      for (; r + kQR <= n; r += kQR) block_scores<kQR>(qc + r * D, kt, D, s + r * kBlk);
      for (; r < n; ++r) block_scores<1>(qc + r * D, kt, D, s + r * kBlk);
      for (r = 0; r < n; ++r) {
        float* sr = s + r * kBlk;
        for (int j = nk; j < kBlk; ++j) sr[j] = -INFINITY;
        VF mx = vload(sr);
        for (int j = kLanes; j < kBlk; j += kLanes) mx = vmax(mx, vload(sr + j));
        const float bmax = vhmax(mx);
        float& m = w.m[r0 + r];
        const float m_new = m > bmax ? m : bmax;
        alpha[r] = m == -INFINITY ? 0.0f : std::exp(m - m_new);
        const VF mv = vset1(m_new);
        VF psum = vzero();
        for (int j = 0; j < kBlk; j += kLanes) {
          const VF p = vexp(vsub(vload(sr + j), mv));
          vstore(sr + j, p);
          psum = vadd(psum, p);
        }
        m = m_new;
        w.l[r0 + r] = w.l[r0 + r] * alpha[r] + vsum(psum);
      }
      float* ac = w.acc + r0 * D;
      for (r = 0; r + kPR <= n; r += kPR)
        block_pv_rows<kPR>(ac + r * D, D, alpha + r, s + r * kBlk, vb, nk);
      for (; r < n; ++r) block_pv_rows<1>(ac + r * D, D, alpha + r, s + r * kBlk, vb, nk);
    }
  }
}

}  // namespace
