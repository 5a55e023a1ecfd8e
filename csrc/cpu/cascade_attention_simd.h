// The vectorised kernels of cascade attention (see CascadeKernels in cascade_attention.h),
// written once over simd.h and compiled by cascade_attention_avx2.cpp and
// cascade_attention_avx512.cpp. Include after simd.h.
//
// Prefix pass: the query rows (member, g) of a kv head lie across the vector lanes, in tiles of
// kTileVecs vectors. Per block of kBlk keys, K and V are widened to fp32 once (bf16 caches) and
// two register-blocked products run against the whole tile: scores S^T[key][row] = K Q^T (one
// K element broadcast against a vector of rows), and acc^T[d][row] += V^T P^T. The online
// softmax then needs no horizontal reduction: the max, exponentials and rescale are per lane.
#pragma once

#include <type_traits>

#include "cpu/cascade_attention.h"

namespace {

using radixserve::cpu::AttendWork;

constexpr int kBlk = radixserve::cpu::kAttendKeyBlock;
constexpr int kTileVecs = radixserve::cpu::kPrefixTileRows / kLanes;  // row vectors per tile
constexpr int kTileRows = kTileVecs * kLanes;



// Prefetches a list of rows a few cache lines at a time, spread over a block's computation:
// hundreds of prefetches issued at once fill the miss buffers and stall the loads behind them.
struct LineFeed {
  static constexpr int kMaxRows = 4 * kBlk;
  const char* rows[kMaxRows];
  int bytes[kMaxRows];
  int n = 0;     // rows listed
  int row = 0;   // next row to fetch
  int off = 0;   // next byte offset in it
  int per_step = 0;

  void add(const void* p, int b) {
    if (n < kMaxRows) {
      rows[n] = static_cast<const char*>(p);
      bytes[n++] = b;
    }
  }
  // Sets per_step so the listed lines are all issued within `steps` calls of step().
  void spread(int steps) {
    int lines = 0;
    for (int i = 0; i < n; ++i) lines += (bytes[i] + 63) / 64;
    per_step = (lines + steps - 1) / (steps > 0 ? steps : 1);
  }
  void step(int lines) {
    for (; lines > 0 && row < n; --lines) {
      _mm_prefetch(rows[row] + off, _MM_HINT_T0);
      off += 64;
      if (off >= bytes[row]) {
        off = 0;
        ++row;
      }
    }
  }
  void step() { step(per_step); }
  void reset() { n = row = off = 0; }
};

// 2^n from t = n + 1.5 * 2^23 (n an integer in [-126, 127]): n sits in the low mantissa bits of
// t, so shifting them into the exponent field and adding the bias gives 2^n's bits.
inline VF vpow2_bits(VF t) {
#if defined(RS_SIMD_AVX512)
  const __m512i e = _mm512_slli_epi32(_mm512_castps_si512(t), 23);
  return _mm512_castsi512_ps(_mm512_add_epi32(e, _mm512_set1_epi32(127 << 23)));
#else
  const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(t), 23);
  return _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_set1_epi32(127 << 23)));
#endif
}

// e^x for the softmax terms (x = score - running max <= 0, or -inf), ~2 ulp like vexp; 14
// vector operations (was 15, among them a round and a float-to-int conversion) in a dependency
// chain of ~30 cycles (was ~42); the exponentials are ~14% of the prefix pass:
// - no upper clamp, and no select that makes inputs below -87 exactly 0: they give e^-87 (a
//   normal float, 1.6e-38) instead, which vanishes next to the row's largest term, e^0 = 1, in
//   every sum and product it enters (a -inf running max only scales zero accumulators);
// - n = round(x log2 e) by adding 1.5 * 2^23 (the sum's low mantissa bits are n, two's
//   complement, so shifting them into the exponent field gives 2^n with one integer add): no
//   round and no float-to-int conversion;
// - e^r on |r| <= ln2/2 by a degree-5 polynomial fitted for relative error (1.9e-7 in fp32,
//   vexp's degree-6 Taylor polynomial 2.2e-7), in Estrin's scheme: a shorter dependency chain.
inline VF vexp_nonpos(VF x) {
  const VF xc = vmax(x, vset1(-87.0f));
  const VF shifter = vset1(12582912.0f);  // 1.5 * 2^23
  const VF t = vfma(xc, vset1(1.44269504088896341f), shifter);
  const VF n = vsub(t, shifter);  // exact: an integer in [-126, 0]
  VF r = vfma(n, vset1(-0.693359375f), xc);  // ln2 split in two, as vexp_clamped
  r = vfma(n, vset1(2.12194440e-4f), r);
  const VF r2 = vmul(r, r);
  const VF p01 = vfma(r, vset1(0.9999997019767761f), vset1(1.0f));
  const VF p23 = vfma(r, vset1(0.1666763573884964f), vset1(0.4999915063381195f));
  const VF p45 = vfma(r, vset1(0.008290315046906471f), vset1(0.04189793020486832f));
  const VF p = vfma(r2, vfma(r2, p45, p23), p01);
  return vmul(p, vpow2_bits(t));
}

// Register blocking of the products: kSubVecs row vectors x kCols keys (scores) or value
// columns (values) of accumulators, plus the row vectors and one broadcast: 16 AVX2 registers.
constexpr int kSubVecs = 3;
constexpr int kCols = 4;
static_assert(kSubVecs == 3, "tile_block's cases");
static_assert(kBlk % kCols == 0, "key block must be whole groups of kCols keys");

// sT[j][rows] = sum_d k[j][d] * qT[d][rows] for kCols keys j (rows TR floats apart).
template <int NRV>
__attribute__((always_inline)) inline void tile_scores(const float* qT, const float* const* k, int D, float* sT) {
  constexpr int TR = kTileRows;
  VF a[kCols][NRV];
  for (int j = 0; j < kCols; ++j)
    for (int v = 0; v < NRV; ++v) a[j][v] = vzero();
  for (int d = 0; d < D; ++d) {
    VF q[NRV];
    for (int v = 0; v < NRV; ++v) q[v] = vload(qT + d * TR + v * kLanes);
    for (int j = 0; j < kCols; ++j) {
      const VF kd = vset1(k[j][d]);
      for (int v = 0; v < NRV; ++v) a[j][v] = vfma(q[v], kd, a[j][v]);
    }
  }
  for (int j = 0; j < kCols; ++j)
    for (int v = 0; v < NRV; ++v) vstore(sT + j * TR + v * kLanes, a[j][v]);
}

// accT[d0 + c][rows] = accT * alpha[rows] + sum_{j < nk} v[j][d0 + c] * pT[j][rows] for kCols
// columns c; on the item's first key block (`first`) accT is not read (nothing to rescale, and
// it is not initialised: a memset of the whole tile per item cost ~1 us).
template <int NRV>
__attribute__((always_inline)) inline void tile_values(float* accT, int d0, const float* alpha, const float* pT,
                        const float* const* v, int nk, bool first) {
  constexpr int TR = kTileRows;
  VF a[kCols][NRV];
  for (int r = 0; r < NRV; ++r) {
    const VF al = vload(alpha + r * kLanes);
    for (int c = 0; c < kCols; ++c)
      a[c][r] = first ? vzero() : vmul(vload(accT + (d0 + c) * TR + r * kLanes), al);
  }
  for (int j = 0; j < nk; ++j) {
    VF p[NRV];
    for (int r = 0; r < NRV; ++r) p[r] = vload(pT + j * TR + r * kLanes);
    for (int c = 0; c < kCols; ++c) {
      const VF vd = vset1(v[j][d0 + c]);
      for (int r = 0; r < NRV; ++r) a[c][r] = vfma(p[r], vd, a[c][r]);
    }
  }
  for (int c = 0; c < kCols; ++c)
    for (int r = 0; r < NRV; ++r) vstore(accT + (d0 + c) * TR + r * kLanes, a[c][r]);
}

// One key block for NRV row vectors (arrays offset to their first row): scores, online
// softmax (per lane), values.
template <int NRV>
void sub_block(const float* qT, const float* const* kr, const float* const* vr, int nk, int D,
               float* sT, float* m, float* l, float* alpha, float* accT, bool first,
               LineFeed& feed) {
  constexpr int TR = kTileRows;
  for (int j = 0; j < nk; j += kCols) {
    feed.step();
    tile_scores<NRV>(qT, kr + j, D, sT + j * TR);
  }
  VF m_new[NRV], psum[NRV];
  for (int v = 0; v < NRV; ++v) {
    const int o = v * kLanes;
    VF mx = vload(sT + o);
    for (int j = 1; j < nk; ++j) mx = vmax(mx, vload(sT + j * TR + o));
    const VF m_old = vload(m + o);
    m_new[v] = vmax(m_old, mx);
    // A lane's first block (m_old = -inf) scales its zero accumulator and sum.
    vstore(alpha + o, vexp_nonpos(vsub(m_old, m_new[v])));
    psum[v] = vzero();
  }
  // The row vectors' exponentials side by side: NRV independent chains per key.
  for (int j = 0; j < nk; ++j) {
    for (int v = 0; v < NRV; ++v) {
      const VF p = vexp_nonpos(vsub(vload(sT + j * TR + v * kLanes), m_new[v]));
      vstore(sT + j * TR + v * kLanes, p);
      psum[v] = vadd(psum[v], p);
    }
  }
  for (int v = 0; v < NRV; ++v) {
    const int o = v * kLanes;
    vstore(l + o, vfma(vload(l + o), vload(alpha + o), psum[v]));
    vstore(m + o, m_new[v]);
  }
  for (int d = 0; d < D; d += kCols) {
    feed.step();
    tile_values<NRV>(accT, d, alpha, sT, vr, nk, first);
  }
}

// One key block for the first nrv row vectors of the tile, kSubVecs at a time (the K/V block,
// widened once, is shared by all).
inline void tile_block(int nrv, const float* qT, const float* const* kr, const float* const* vr,
                       int nk, int D, float* sT, float* m, float* l, float* alpha, float* accT,
                       bool first, LineFeed& feed) {
  const int nsub = (nrv + kSubVecs - 1) / kSubVecs;
  feed.spread(nsub * ((nk + kCols - 1) / kCols + D / kCols));
  for (int v0 = 0; v0 < nrv; v0 += kSubVecs) {
    const int o = v0 * kLanes;
    switch (nrv - v0) {
      case 1:
        sub_block<1>(qT + o, kr, vr, nk, D, sT + o, m + o, l + o, alpha + o, accT + o, first, feed);
        break;
      case 2:
        sub_block<2>(qT + o, kr, vr, nk, D, sT + o, m + o, l + o, alpha + o, accT + o, first, feed);
        break;
      default:
        sub_block<kSubVecs>(qT + o, kr, vr, nk, D, sT + o, m + o, l + o, alpha + o, accT + o, first, feed);
        break;
    }
  }
  feed.step(1 << 30);  // whatever is left
}

// Row of the block as fp32: the cache row itself (fp32 cache) or its widened copy in buf.
template <typename TKV>
inline const float* fp32_row(const TKV* row, float* buf, int D) {
  if constexpr (std::is_same_v<TKV, float>) {
    return row;
  } else {
    for (int c = 0; c < D; c += kLanes) vstore(buf + c, vload(row + c));
    return buf;
  }
}

// Rows of a key block are fetched in two steps: kTouchAhead blocks ahead one byte of each K and
// V row is loaded (a load walks the page tables: the scattered rows each sit in their own page,
// and a prefetch that misses the TLB may be dropped), one block ahead the rows are prefetched.
constexpr int kTouchAhead = 2;

template <typename T, typename TKV>
void touch_rows(const AttendWork<T, TKV>& w, int64_t head_off, int64_t k0, int64_t k1) {
  int sink = 0;
  for (int64_t k = k0; k < k1; ++k) {
    const int64_t off = static_cast<int64_t>(w.slots[k]) * w.slot_stride + head_off;
    sink += *reinterpret_cast<const volatile char*>(w.k_cache + off);
    sink += *reinterpret_cast<const volatile char*>(w.v_cache + off);
  }
  asm volatile("" ::"r"(sink));
}

// The tile's queries, scaled, rows across lanes: qT[d][r] = q row (t0 + r) [d] * scale, 0 for
// r >= nrows up to nr (a whole number of vectors), by 8 x 8 transposes (was one scalar
// conversion and strided store per element, ~1 us per item).
template <typename T, typename TKV>
void load_queries_transposed(const AttendWork<T, TKV>& w, int64_t t0, int nrows, int nr,
                             float* qT) {
  const int G = w.num_heads, D = w.head_dim;
  const __m256 sc = _mm256_set1_ps(w.scale);
  for (int r0 = 0; r0 < nr; r0 += 8) {
    const T* qr[8];
    for (int i = 0; i < 8; ++i) {
      const int64_t row = t0 + r0 + i;
      qr[i] = r0 + i < nrows ? w.q + (row / G) * w.q_stride + (row % G) * D : nullptr;
    }
    for (int d0 = 0; d0 < D; d0 += 8) {
      __m256 x[8];
      for (int i = 0; i < 8; ++i)
        x[i] = qr[i] != nullptr ? _mm256_mul_ps(load8(qr[i] + d0), sc) : _mm256_setzero_ps();
      transpose8(x);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(qT + (d0 + i) * kTileRows + r0, x[i]);
    }
  }
}

// The tile's partial outputs back to rows: acc[r][d] = accT[d][r] for r < nrows.
inline void store_acc_rows(const float* accT, int nrows, int D, float* acc) {
  for (int r0 = 0; r0 < nrows; r0 += 8) {
    for (int d0 = 0; d0 < D; d0 += 8) {
      __m256 x[8];
      for (int i = 0; i < 8; ++i) x[i] = _mm256_loadu_ps(accT + (d0 + i) * kTileRows + r0);
      transpose8(x);
      for (int i = 0; i < 8 && r0 + i < nrows; ++i) _mm256_storeu_ps(acc + (r0 + i) * D + d0, x[i]);
    }
  }
}

template <typename T, typename TKV>
void prefix_simd(const AttendWork<T, TKV>& w) {
  const int G = w.num_heads;
  const int D = w.head_dim;
  const int64_t rows = w.n_q * G;
  constexpr int TR = kTileRows;
  // Scratch (radixserve::cpu::prefix_scratch_floats): qT and accT [D][TR], sT [kBlk][TR], then
  // m, l and alpha [TR].
  float* qT = w.qbuf;
  float* accT = qT + D * TR;
  float* sT = accT + D * TR;
  float* m = sT + kBlk * TR;
  float* l = m + TR;
  float* alpha = l + TR;
  const int64_t kb = w.key_begin > 0 ? w.key_begin : 0;
  const int64_t ke = w.key_end;
  // The first head's item fetches whole token rows (every kv head): the items of the other
  // heads of this key chunk, which run next, then find them in L2 and their pages in the TLB.
  const int64_t fetch_off = w.head_off;
  const int fetch_bytes =
      static_cast<int>((w.head_off == 0 ? w.slot_stride : D) * static_cast<int64_t>(sizeof(TKV)));
  const float* kr[kBlk];
  const float* vr[kBlk];
  LineFeed feed;
  for (int64_t t0 = 0; t0 < rows; t0 += TR) {
    const int nrows = static_cast<int>(min64(TR, rows - t0));
    const int nrv = (nrows + kLanes - 1) / kLanes;
    for (int r = 0; r < nrv * kLanes; ++r) {
      m[r] = -INFINITY;
      l[r] = 0.0f;
    }
    if (ke <= kb)  // no key block initialises accT
      for (int d = 0; d < D; ++d)
        for (int r = 0; r < nrv * kLanes; ++r) accT[d * TR + r] = 0.0f;
    load_queries_transposed(w, t0, nrows, nrv * kLanes, qT);
    // Slots are scattered: the hardware prefetcher cannot guess the rows, so fetch the first
    // block now and each next block while the current one is computed.
    touch_rows(w, fetch_off, kb, min64(ke, kb + kTouchAhead * kBlk));
    for (int64_t k = kb; k < min64(ke, kb + kBlk); ++k) {
      const int64_t off = static_cast<int64_t>(w.slots[k]) * w.slot_stride + fetch_off;
      prefetch_bytes(w.k_cache + off, fetch_bytes);
      prefetch_bytes(w.v_cache + off, fetch_bytes);
    }
    for (int64_t k0 = kb; k0 < ke; k0 += kBlk) {
      const int nk = static_cast<int>(min64(kBlk, ke - k0));
      feed.reset();
      touch_rows(w, fetch_off, k0 + kTouchAhead * kBlk, min64(ke, k0 + (kTouchAhead + 1) * kBlk));
      for (int64_t k = k0 + kBlk; k < min64(ke, k0 + 2 * kBlk); ++k) {
        const int64_t off = static_cast<int64_t>(w.slots[k]) * w.slot_stride + fetch_off;
        feed.add(w.k_cache + off, fetch_bytes);
        feed.add(w.v_cache + off, fetch_bytes);
      }
      for (int j = 0; j < nk; ++j) {
        const int64_t off = static_cast<int64_t>(w.slots[k0 + j]) * w.slot_stride + w.head_off;
        kr[j] = fp32_row(w.k_cache + off, w.kvbuf + j * D, D);
        vr[j] = fp32_row(w.v_cache + off, w.kvbuf + (kBlk + j) * D, D);
      }
      for (int j = nk; j < kBlk; ++j) kr[j] = kr[0];  // scored, never used
      tile_block(nrv, qT, kr, vr, nk, D, sT, m, l, alpha, accT, k0 == kb, feed);
    }
    for (int r = 0; r < nrows; ++r) {
      w.m[t0 + r] = m[r];
      w.l[t0 + r] = l[r];
    }
    store_acc_rows(accT, nrows, D, w.acc + t0 * D);
  }
}

}  // namespace

// ---- The suffix pass (SuffixWork in cascade_attention.h) ----

namespace {

using radixserve::cpu::SuffixItem;
using radixserve::cpu::SuffixWork;

constexpr int kSB = radixserve::cpu::kSuffixBlock;
static_assert(kSB % 4 == 0 && kSB % kLanes == 0, "suffix block must be whole vectors");
using radixserve::cpu::kSuffixStageKeys;

// The four lane sums of a[0..3], as one 4-float vector.
inline __m128 sum4(const VF* a) {
#if defined(RS_SIMD_AVX512)
  __m256 h[4];
  for (int n = 0; n < 4; ++n)
    h[n] = _mm256_add_ps(_mm512_castps512_ps256(a[n]), _mm512_extractf32x8_ps(a[n], 1));
#else
  const __m256* h = a;
#endif
  const __m256 t0 = _mm256_hadd_ps(h[0], h[1]);
  const __m256 t1 = _mm256_hadd_ps(h[2], h[3]);
  const __m256 u = _mm256_hadd_ps(t0, t1);  // per 128-bit half: partial sums of a0..a3
  return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

// s[r * kSB + 0..3] = q[r] . k[0..3] for R query rows (D floats apart): each K vector is
// loaded (and widened from bf16) once for all R rows.
template <int R, typename TKV>
inline void dot4(const float* q, const TKV* const* k, int D, float* s) {
  VF a[R][4];
  for (int r = 0; r < R; ++r)
    for (int n = 0; n < 4; ++n) a[r][n] = vzero();
  for (int c = 0; c < D; c += kLanes) {
    for (int n = 0; n < 4; ++n) {
      const VF kv = vload(k[n] + c);
      for (int r = 0; r < R; ++r) a[r][n] = vfma(vload(q + r * D + c), kv, a[r][n]);
    }
  }
  for (int r = 0; r < R; ++r) _mm_storeu_ps(s + r * kSB, sum4(a[r]));
}

// acc[r][c0 : c0 + C*kLanes] = acc * alpha[r] + sum_{j < nk} p[r][j] * v[j][...] for R rows:
// each V vector is loaded (and widened) once for all R rows.
template <int R, int C, typename TKV>
inline void pv_rows(float* acc, int D, int c0, const float* alpha, const float* p,
                    const TKV* const* v, int nk) {
  VF a[R][C];
  for (int r = 0; r < R; ++r) {
    const VF al = vset1(alpha[r]);
    for (int c = 0; c < C; ++c) a[r][c] = vmul(vload(acc + r * D + c0 + c * kLanes), al);
  }
  for (int j = 0; j < nk; ++j) {
    VF pj[R];
    for (int r = 0; r < R; ++r) pj[r] = vset1(p[r * kSB + j]);
    for (int c = 0; c < C; ++c) {
      const VF vv = vload(v[j] + c0 + c * kLanes);
      for (int r = 0; r < R; ++r) a[r][c] = vfma(pj[r], vv, a[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) vstore(acc + r * D + c0 + c * kLanes, a[r][c]);
}

// One block of keys for R (<= 3) query rows of one kv head: scores, online softmax, values.
template <int R, typename TKV>
inline void suffix_rows(const float* q, const TKV* const* kr, const TKV* const* vr, int nk,
                        int D, float* s, float* m, float* l, float* acc) {
  for (int j = 0; j < nk; j += 4) dot4<R>(q, kr + j, D, s + j);
  float alpha[R];
  for (int r = 0; r < R; ++r) {
    float* sr = s + r * kSB;
    for (int j = nk; j < kSB; ++j) sr[j] = -INFINITY;
    VF mx = vload(sr);
    for (int j = kLanes; j < kSB; j += kLanes) mx = vmax(mx, vload(sr + j));
    const float bmax = vhmax(mx);
    const float m_new = m[r] > bmax ? m[r] : bmax;
    alpha[r] = m[r] == -INFINITY ? 0.0f : std::exp(m[r] - m_new);
    const VF mv = vset1(m_new);
    VF psum = vzero();
    for (int j = 0; j < kSB; j += kLanes) {
      const VF p = vexp_nonpos(vsub(vload(sr + j), mv));  // keys past nk: ~0, never used
      vstore(sr + j, p);
      psum = vadd(psum, p);
    }
    m[r] = m_new;
    l[r] = l[r] * alpha[r] + vsum(psum);
  }
  // AVX2: 3 rows x 4 vectors of accumulators, the 3 broadcast weights and a V vector take all
  // 16 registers, and GCC spilled the weights and the widened V to the stack in the inner loop;
  // 3 x 2 vectors (11 registers) measured faster than that (contiguous bf16 suffix pass 164-169
  // -> 145-150 us in a stand-alone harness), but its 6 accumulators wait on the FMA latency
  // (4 cycles per key for 6 FMAs that issue in 3). 3 x 3 (13 registers) keeps both FMA units
  // busy, with a 3 x 2 tile for the remaining columns (head_dim 64: 3 + 3 + 2 vectors).
  // AVX-512 has 32 registers.
  constexpr int C = R >= 3 && kLanes == 8 ? 3 : 4;
  int c = 0;
  for (; c + C * kLanes <= D; c += C * kLanes) pv_rows<R, C>(acc, D, c, alpha, s, vr, nk);
  if constexpr (C == 3)
    for (; c + 2 * kLanes <= D; c += 2 * kLanes) pv_rows<R, 2>(acc, D, c, alpha, s, vr, nk);
  for (; c < D; c += kLanes) pv_rows<R, 1>(acc, D, c, alpha, s, vr, nk);
}

template <typename T, typename TKV>
void suffix_simd(const SuffixWork<T, TKV>& w) {
  const int G = w.num_heads;
  const int D = w.head_dim;
  const int Hkv = w.num_kv_heads;
  const int Hq = Hkv * G;
  const int64_t stride = static_cast<int64_t>(Hkv) * D;
  const VF sc = vset1(w.scale);
  const TKV* kr[kSB];
  const TKV* vr[kSB];
  alignas(64) float s[3 * kSB];
  for (int64_t i = 0; i < w.n_items; ++i) {
    const SuffixItem& it = w.items[i];
    float* m = w.m + it.part;
    float* l = w.l + it.part;
    float* acc = w.acc + it.part * D;
    const T* qp = w.q + it.b * Hq * D;
    for (int r = 0; r < Hq; ++r) {
      m[r] = -INFINITY;
      l[r] = 0.0f;
      for (int c = 0; c < D; c += kLanes) {
        vstore(acc + r * D + c, vzero());
        vstore(w.qbuf + r * D + c, vmul(vload(qp + r * D + c), sc));
      }
    }
    const int32_t* slots = w.table + w.pool_rows[it.b] * w.max_ctx;
    for (int64_t c0 = it.key_begin; c0 < it.key_end; c0 += kSuffixStageKeys) {
      const int64_t c1 = min64(it.key_end, c0 + kSuffixStageKeys);
      radixserve::cpu::fetch_token_rows(w.k_cache, w.v_cache, slots, c0, c1, stride);
      for (int64_t k0 = c0; k0 < c1; k0 += kSB) {
        const int nk = static_cast<int>(min64(kSB, c1 - k0));
        for (int h = 0; h < Hkv; ++h) {
          for (int j = 0; j < nk; ++j) {
            const int64_t off = static_cast<int64_t>(slots[k0 + j]) * stride + h * D;
            kr[j] = w.k_cache + off;
            vr[j] = w.v_cache + off;
          }
          for (int j = nk; j < kSB; ++j) kr[j] = kr[0];  // scored, then masked out
          const int r0 = h * G;
          int g = 0;
          for (; g + 3 <= G; g += 3)
            suffix_rows<3>(w.qbuf + (r0 + g) * D, kr, vr, nk, D, s, m + r0 + g, l + r0 + g,
                           acc + (r0 + g) * D);
          if (G - g == 2)
            suffix_rows<2>(w.qbuf + (r0 + g) * D, kr, vr, nk, D, s, m + r0 + g, l + r0 + g,
                           acc + (r0 + g) * D);
          if (G - g == 1)
            suffix_rows<1>(w.qbuf + (r0 + g) * D, kr, vr, nk, D, s, m + r0 + g, l + r0 + g,
                           acc + (r0 + g) * D);
        }
      }
    }
  }
}

}  // namespace
