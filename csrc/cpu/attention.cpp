// torch-facing attention entry points: validation, work split, OpenMP, and the portable kernel.
#include "cpu/attention.h"

#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "cpu/bf16.h"
#include "cpu/cpu_features.h"
#include "cpu/kernel_checks.h"
#include "cpu/split_call.h"

namespace radixserve::cpu {
namespace {

// Portable kernel: one key at a time, rescaling a row only when its running max grows.
template <typename T, typename TKV>
void attend_generic(const AttendWork<T, TKV>& w) {
  const int G = w.num_heads;
  const int D = w.head_dim;
  const int64_t rows = w.n_q * G;
  for (int64_t r = 0; r < rows; ++r) {
    w.m[r] = -INFINITY;
    w.l[r] = 0.0f;
    const T* qr = w.q + (r / G) * w.q_stride + (r % G) * D;
    for (int d = 0; d < D; ++d) {
      w.acc[r * D + d] = 0.0f;
      w.qbuf[r * D + d] = to_f32(qr[d]) * w.scale;
    }
  }
  int64_t kb = std::max<int64_t>(w.key_begin, 0);
  if (w.window > 0) kb = std::max(kb, w.pos0 - w.window + 1);
  const int64_t ke = std::min(w.key_end, w.pos0 + w.n_q);
  for (int64_t k = kb; k < ke; ++k) {
    const int64_t off = static_cast<int64_t>(w.slots[k]) * w.slot_stride + w.head_off;
    const TKV* kr = w.k_cache + off;
    const TKV* vr = w.v_cache + off;
    for (int64_t i = 0; i < w.n_q; ++i) {
      const int64_t pos = w.pos0 + i;
      if (k > pos || (w.window > 0 && k <= pos - w.window)) continue;
      for (int g = 0; g < G; ++g) {
        const int64_t r = i * G + g;
        const float* qb = w.qbuf + r * D;
        float s = 0.0f;
        for (int d = 0; d < D; ++d) s += qb[d] * to_f32(kr[d]);
        float* acc = w.acc + r * D;
        if (s > w.m[r]) {
          const float alpha = w.m[r] == -INFINITY ? 0.0f : std::exp(w.m[r] - s);
          for (int d = 0; d < D; ++d) acc[d] *= alpha;
          w.l[r] *= alpha;
          w.m[r] = s;
        }
        const float p = std::exp(s - w.m[r]);
        w.l[r] += p;
        for (int d = 0; d < D; ++d) acc[d] += p * to_f32(vr[d]);
      }
    }
  }
}

AttendKernels pick_kernels(int head_dim) {
  AttendKernels k{nullptr, nullptr, nullptr, 1};
  switch (active_isa()) {
    case Isa::kAvx512:
      k = attend_kernels_avx512();
      break;
    case Isa::kAvx2:
      k = attend_kernels_avx2();
      break;
    default:
      break;
  }
  if (k.f32 != nullptr && head_dim % k.lanes == 0) return k;
  return attend_kernels_generic();
}

// The portable extend kernel: the attend kernel, then each row's acc / l written out.
template <typename T, typename TKV>
void extend_generic(const AttendWork<T, TKV>& w, T* out) {
  attend_generic(w);
  const int G = w.num_heads, D = w.head_dim;
  for (int64_t r = 0; r < w.n_q * G; ++r) {
    T* o = out + (r / G) * w.q_stride + (r % G) * D;
    const float inv = w.l[r] > 0.0f ? 1.0f / w.l[r] : 0.0f;
    for (int d = 0; d < D; ++d) store_f32(o + d, w.acc[r * D + d] * inv);
  }
}

// The blocked extend kernel of the active build (any head_dim), else the portable one.
ExtendKernels pick_extend_kernels() {
  switch (active_isa()) {
    case Isa::kAvx512:
      return extend_kernels_avx512();
    case Isa::kAvx2:
      return extend_kernels_avx2();
    default:
      return extend_kernels_generic();
  }
}

// Query tokens per extend item. The blocked kernels gather and widen each key block once per
// item, so an item takes about kExtendItemRows rows (query tokens x G heads), in whole vectors:
// the largest such tile, down to half of it, that wastes the fewest padding lanes. The portable
// kernel keeps its blocks of about 64 rows.
constexpr int64_t kExtendItemRows = 288;
int64_t extend_tile_tokens(int64_t G, int lanes) {
  if (lanes == 1) return std::max<int64_t>(1, 64 / G);
  const int64_t most = std::max<int64_t>(1, kExtendItemRows / G);
  int64_t best = most;
  double best_waste = 1.0;
  for (int64_t t = most; t >= (most + 1) / 2; --t) {
    const int64_t rows = t * G;
    const double waste = static_cast<double>((rows + lanes - 1) / lanes * lanes - rows) / rows;
    if (waste < best_waste) {
      best = t;
      best_waste = waste;
    }
  }
  return best;
}

// Validates the cache, table and per-request index tensors shared by decode and extend.
void check_paged_inputs(const at::Tensor& q, const at::Tensor& out, const at::Tensor& k_cache,
                        const at::Tensor& v_cache, const at::Tensor& req_to_token,
                        const at::Tensor& req_pool_indices, const at::Tensor& seq_lens,
                        double scale) {
  check_tensor(q, "q", 3);
  check_tensor(out, "out", 3);
  check_tensor(k_cache, "k_cache", 3);
  check_tensor(v_cache, "v_cache", 3);
  check_tensor(req_to_token, "req_to_token", 2);
  check_tensor(req_pool_indices, "req_pool_indices", 1);
  check_tensor(seq_lens, "seq_lens", 1);
  check_float_dtype(q, "q");
  check_same_dtype(out, q, "out", "q");
  check_kv_cache_dtype(k_cache, q);
  check_same_dtype(v_cache, k_cache, "v_cache", "k_cache");
  check_dtype(req_to_token, "req_to_token", at::kInt);
  check_dtype(req_pool_indices, "req_pool_indices", at::kLong);
  check_dtype(seq_lens, "seq_lens", at::kLong);
  RS_CHECK(out.sizes() == q.sizes(), "out must have the shape of q ", q.sizes(), ", got ",
           out.sizes());
  RS_CHECK(v_cache.sizes() == k_cache.sizes(), "v_cache must have the shape of k_cache ",
           k_cache.sizes(), ", got ", v_cache.sizes());
  check_size(k_cache, "k_cache", 2, q.size(2));
  RS_CHECK(q.size(2) > 0, "head_dim must be positive");
  RS_CHECK(k_cache.size(1) > 0 && q.size(1) % k_cache.size(1) == 0,
           "the number of query heads (", q.size(1), ") must be a multiple of the number of kv heads (",
           k_cache.size(1), ")");
  check_size(seq_lens, "seq_lens", 0, req_pool_indices.size(0));
  RS_CHECK(std::isfinite(scale), "scale must be finite, got ", scale);
  const int64_t max_reqs = req_to_token.size(0);
  const int64_t max_ctx = req_to_token.size(1);
  const int64_t* rows = req_pool_indices.data_ptr<int64_t>();
  const int64_t* lens = seq_lens.data_ptr<int64_t>();
  for (int64_t b = 0; b < seq_lens.size(0); ++b) {
    RS_CHECK(rows[b] >= 0 && rows[b] < max_reqs, "req_pool_indices[", b, "] = ", rows[b],
             " is out of range [0, ", max_reqs, ")");
    RS_CHECK(lens[b] >= 0 && lens[b] <= max_ctx, "seq_lens[", b, "] = ", lens[b],
             " is out of range [0, req_to_token.size(1) = ", max_ctx, "]");
  }
}

// Every slot a request reads must index the cache: one pass over the int32 table entries is
// cheap next to the K/V rows they point at, and turns a stray slot into an error, not a crash.
void check_slots(const at::Tensor& req_to_token, const at::Tensor& req_pool_indices,
                 const at::Tensor& seq_lens, int64_t num_slots) {
  const int32_t* table = req_to_token.data_ptr<int32_t>();
  const int64_t* rows = req_pool_indices.data_ptr<int64_t>();
  const int64_t* lens = seq_lens.data_ptr<int64_t>();
  const int64_t max_ctx = req_to_token.size(1);
  for (int64_t b = 0; b < seq_lens.size(0); ++b) {
    const int32_t* s = table + rows[b] * max_ctx;
    int32_t lo = 0, hi = 0;
    for (int64_t t = 0; t < lens[b]; ++t) {
      lo = std::min(lo, s[t]);
      hi = std::max(hi, s[t]);
    }
    RS_CHECK(lo >= 0 && hi < num_slots, "req_to_token row ", rows[b], " (request ", b,
             ") holds a slot outside the cache [0, ", num_slots, ")");
  }
}

template <typename T, typename TKV>
AttendWork<T, TKV> base_work(const at::Tensor& q, const at::Tensor& k_cache,
                             const at::Tensor& v_cache, double scale, int64_t window) {
  AttendWork<T, TKV> w{};
  w.q_stride = q.size(1) * q.size(2);
  w.window = window;
  w.k_cache = static_cast<const TKV*>(k_cache.data_ptr());
  w.v_cache = static_cast<const TKV*>(v_cache.data_ptr());
  w.slot_stride = k_cache.size(1) * k_cache.size(2);
  w.num_heads = static_cast<int>(q.size(1) / k_cache.size(1));
  w.head_dim = static_cast<int>(q.size(2));
  w.scale = static_cast<float>(scale);
  return w;
}

// out row = sum_s exp(m_s - M) acc_s / sum_s exp(m_s - M) l_s over the n partial results.
template <typename T>
void merge_rows(T* out, int D, int n, const float* m, const float* l, const float* acc,
                int64_t stride_part, int64_t stride_acc) {
  float mx = -INFINITY;
  for (int s = 0; s < n; ++s) mx = std::max(mx, m[s * stride_part]);
  float denom = 0.0f;
  float wts[64];
  for (int s = 0; s < n; ++s) {
    wts[s] = m[s * stride_part] == -INFINITY ? 0.0f : std::exp(m[s * stride_part] - mx);
    denom += wts[s] * l[s * stride_part];
  }
  const float inv = denom > 0.0f ? 1.0f / denom : 0.0f;
  for (int d = 0; d < D; ++d) {
    float v = 0.0f;
    for (int s = 0; s < n; ++s) v += wts[s] * acc[s * stride_acc + d];
    store_f32(out + d, v * inv);
  }
}

constexpr int64_t kMinChunk = 256;  // keys per flash-decoding chunk, at least
constexpr int kMaxSplits = 64;

template <typename T, typename TKV>
SplitCall decode_call(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k_cache,
                      const at::Tensor& v_cache, const at::Tensor& req_to_token,
                      const at::Tensor& req_pool_indices, const at::Tensor& seq_lens,
                      double scale, int64_t window) {
  const int64_t B = q.size(0), Hq = q.size(1), D = q.size(2), Hkv = k_cache.size(1);
  const int64_t G = Hq / Hkv;
  const int64_t max_ctx = req_to_token.size(1);
  const int32_t* table = req_to_token.data_ptr<int32_t>();
  const int64_t* rows = req_pool_indices.data_ptr<int64_t>();
  const int64_t* lens = seq_lens.data_ptr<int64_t>();
  const int nthreads = at::get_num_threads();

  // Flash-decoding: with few (request, kv head) items, split each request's keys into chunks
  // so every thread has work, then merge the chunks' softmax states.
  int64_t max_keys = 0;
  for (int64_t b = 0; b < B; ++b) {
    max_keys = std::max(max_keys, window > 0 ? std::min(lens[b], window) : lens[b]);
  }
  const int64_t base = B * Hkv;
  int64_t nsplit = (8 * nthreads + base - 1) / base;
  nsplit = std::min<int64_t>({nsplit, (max_keys + kMinChunk - 1) / kMinChunk, kMaxSplits});
  nsplit = std::max<int64_t>(nsplit, 1);
  const int64_t items = base * nsplit;
  // A parallel region costs microseconds (and, on a loaded machine, waits for a descheduled
  // thread): small steps run on the calling thread.
  int64_t total_keys = 0;
  for (int64_t b = 0; b < B; ++b) total_keys += lens[b];
  const int region_threads = total_keys * Hkv * G * D < (int64_t{1} << 16) ? 1 : nthreads;

  struct Parts {
    std::vector<float> m, l, acc, qbuf;
  };
  auto parts = std::make_shared<Parts>();
  parts->m.resize(items * G);
  parts->l.resize(items * G);
  parts->acc.resize(items * G * D);
  parts->qbuf.resize(items * G * D);
  const AttendKernels kern = pick_kernels(static_cast<int>(D));
  const AttendWork<T, TKV> proto = base_work<T, TKV>(q, k_cache, v_cache, scale, window);
  const T* qp = static_cast<const T*>(q.data_ptr());

  SplitCall call;
  SplitPhase attend;
  attend.items = items;
  attend.threads = region_threads;
  attend.dynamic = true;
  // The lambdas hold q and out (their data outlive the caller's handles in a fused step).
  attend.run = [=, q_alive = q](int64_t begin, int64_t end) {
    static thread_local std::vector<float> kvbuf;
    kvbuf.resize(2 * kAttendKeyBlock * D);
    for (int64_t it = begin; it < end; ++it) {
      const int64_t b = it / (Hkv * nsplit);
      const int64_t h = (it / nsplit) % Hkv;
      const int64_t s = it % nsplit;
      const int64_t len = lens[b];
      const int64_t first = window > 0 ? std::max<int64_t>(0, len - window) : 0;
      // Chunks are whole key blocks so the vector kernel's blocks stay full.
      const int64_t chunk =
          ((len - first + nsplit - 1) / nsplit + kAttendKeyBlock - 1) / kAttendKeyBlock *
          kAttendKeyBlock;
      AttendWork<T, TKV> w = proto;
      w.q = qp + (b * Hq + h * G) * D;
      w.n_q = 1;
      w.pos0 = len - 1;
      w.key_begin = first + s * chunk;
      w.key_end = std::min(len, first + (s + 1) * chunk);
      w.slots = table + rows[b] * max_ctx;
      w.head_off = h * D;
      w.m = parts->m.data() + it * G;
      w.l = parts->l.data() + it * G;
      w.acc = parts->acc.data() + it * G * D;
      w.qbuf = parts->qbuf.data() + it * G * D;
      w.kvbuf = kvbuf.data();
      call_attend(kern, w);
    }
  };
  call.phases.push_back(std::move(attend));

  T* op = static_cast<T*>(out.data_ptr());
  SplitPhase merge;
  merge.items = B * Hq;
  merge.threads = B * Hq * D * nsplit < (int64_t{1} << 16) ? 1 : nthreads;
  merge.run = [=, out_alive = out](int64_t begin, int64_t end) {
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t hq = bh % Hq, h = hq / G, g = hq % G;
      const int64_t it0 = (bh / Hq * Hkv + h) * nsplit;
      merge_rows(op + bh * D, static_cast<int>(D), static_cast<int>(nsplit),
                 parts->m.data() + it0 * G + g, parts->l.data() + it0 * G + g,
                 parts->acc.data() + (it0 * G + g) * D, G, G * D);
    }
  };
  call.phases.push_back(std::move(merge));
  call.finish = [out] { return out; };
  return call;
}

template <typename T, typename TKV>
void extend_impl(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k_cache,
                 const at::Tensor& v_cache, const at::Tensor& req_to_token,
                 const at::Tensor& req_pool_indices, const at::Tensor& seq_lens,
                 const at::Tensor& extend_seq_lens, const at::Tensor& extend_start_loc,
                 double scale, int64_t window) {
  const int64_t B = seq_lens.size(0), Hq = q.size(1), D = q.size(2), Hkv = k_cache.size(1);
  const int64_t G = Hq / Hkv;
  const int64_t max_ctx = req_to_token.size(1);
  const int32_t* table = req_to_token.data_ptr<int32_t>();
  const int64_t* rows = req_pool_indices.data_ptr<int64_t>();
  const int64_t* lens = seq_lens.data_ptr<int64_t>();
  const int64_t* ext = extend_seq_lens.data_ptr<int64_t>();
  const int64_t* start = extend_start_loc.data_ptr<int64_t>();
  const int nthreads = at::get_num_threads();

  // Items: (request, kv head, tile of queries); a tile shares each K/V row it reads.
  const ExtendKernels kern = pick_extend_kernels();
  int64_t qblock = extend_tile_tokens(G, kern.lanes);
  // Small batches: smaller tiles, so that every thread gets several items.
  const auto count_items = [&](int64_t tile) {
    int64_t n = 0;
    for (int64_t b = 0; b < B; ++b) n += (ext[b] + tile - 1) / tile * Hkv;
    return n;
  };
  while (qblock > 1 && qblock * G > 64 && count_items(qblock) < 4 * nthreads) {
    qblock = (qblock + 1) / 2;
  }
  struct Item {
    int64_t b, h, j0;
  };
  std::vector<Item> work;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j0 = 0; j0 < ext[b]; j0 += qblock)
      for (int64_t h = 0; h < Hkv; ++h) work.push_back({b, h, j0});
  // Later query tiles see more keys: start them first for a better dynamic balance.
  std::stable_sort(work.begin(), work.end(), [&](const Item& x, const Item& y) {
    return lens[x.b] - ext[x.b] + x.j0 > lens[y.b] - ext[y.b] + y.j0;
  });

  const AttendWork<T, TKV> proto = base_work<T, TKV>(q, k_cache, v_cache, scale, window);
  const T* qp = static_cast<const T*>(q.data_ptr());
  T* op = static_cast<T*>(out.data_ptr());
  const int64_t n_items = static_cast<int64_t>(work.size());

#pragma omp parallel num_threads(nthreads)
  {
    const int64_t rmax = qblock * G;
    std::vector<float> m(rmax), l(rmax), acc(rmax * D), qbuf(extend_qbuf_floats(rmax, D));
    std::vector<float> kvbuf(
        std::max(extend_kvbuf_floats(rmax, D), int64_t{2} * kAttendKeyBlock * D));
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < n_items; ++it) {
      const Item& item = work[it];
      const int64_t nq = std::min(qblock, ext[item.b] - item.j0);
      const int64_t tok0 = start[item.b] + item.j0;
      AttendWork<T, TKV> w = proto;
      w.q = qp + tok0 * Hq * D + item.h * G * D;
      w.n_q = nq;
      w.pos0 = lens[item.b] - ext[item.b] + item.j0;
      w.key_begin = 0;
      w.key_end = w.pos0 + nq;
      w.slots = table + rows[item.b] * max_ctx;
      w.head_off = item.h * D;
      w.m = m.data();
      w.l = l.data();
      w.acc = acc.data();
      w.qbuf = qbuf.data();
      w.kvbuf = kvbuf.data();
      call_extend(kern, w, op + tok0 * Hq * D + item.h * G * D);
    }
  }
}

}  // namespace

void store_kv(const at::Tensor& k_cache, const at::Tensor& v_cache, const at::Tensor& loc,
              const at::Tensor& k, const at::Tensor& v) {
  check_tensor(k_cache, "k_cache", 3);
  check_tensor(v_cache, "v_cache", 3);
  check_tensor(loc, "loc", 1);
  check_tensor(k, "k", 3);
  check_tensor(v, "v", 3);
  check_float_dtype(k_cache, "k_cache");
  check_same_dtype(v_cache, k_cache, "v_cache", "k_cache");
  check_kv_cache_dtype(k_cache, k);
  check_same_dtype(v, k, "v", "k");
  RS_CHECK(loc.scalar_type() == at::kLong || loc.scalar_type() == at::kInt,
           "loc must be int64 or int32, got ", loc.scalar_type());
  RS_CHECK(v_cache.sizes() == k_cache.sizes(), "v_cache must have the shape of k_cache ",
           k_cache.sizes(), ", got ", v_cache.sizes());
  RS_CHECK(k.sizes() == v.sizes(), "k and v must have the same shape, got ", k.sizes(), " and ",
           v.sizes());
  check_size(k, "k", 0, loc.size(0));
  check_size(k, "k", 1, k_cache.size(1));
  check_size(k, "k", 2, k_cache.size(2));
  const int64_t n = loc.size(0), num_slots = k_cache.size(0);
  std::vector<int64_t> slots(n);
  for (int64_t t = 0; t < n; ++t) {
    slots[t] = loc.scalar_type() == at::kLong ? loc.data_ptr<int64_t>()[t]
                                              : loc.data_ptr<int32_t>()[t];
    RS_CHECK(slots[t] >= 0 && slots[t] < num_slots, "loc[", t, "] = ", slots[t],
             " is out of range [0, ", num_slots, ")");
  }
  if (k.scalar_type() != k_cache.scalar_type()) {  // fp32 rows into a bfloat16 cache
    const int64_t row = k_cache.size(1) * k_cache.size(2);
    uint16_t* kc = static_cast<uint16_t*>(k_cache.data_ptr());
    uint16_t* vc = static_cast<uint16_t*>(v_cache.data_ptr());
    const float* kp = k.data_ptr<float>();
    const float* vp = v.data_ptr<float>();
#pragma omp parallel for schedule(static) num_threads(at::get_num_threads()) if (n > 64)
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t c = 0; c < row; ++c) {
        kc[slots[t] * row + c] = f32_to_bf16(kp[t * row + c]);
        vc[slots[t] * row + c] = f32_to_bf16(vp[t * row + c]);
      }
    }
    return;
  }
  const int64_t row_bytes = k_cache.size(1) * k_cache.size(2) * k_cache.element_size();
  char* kc = static_cast<char*>(k_cache.data_ptr());
  char* vc = static_cast<char*>(v_cache.data_ptr());
  const char* kp = static_cast<const char*>(k.data_ptr());
  const char* vp = static_cast<const char*>(v.data_ptr());
#pragma omp parallel for schedule(static) num_threads(at::get_num_threads()) if (n > 64)
  for (int64_t t = 0; t < n; ++t) {
    std::memcpy(kc + slots[t] * row_bytes, kp + t * row_bytes, row_bytes);
    std::memcpy(vc + slots[t] * row_bytes, vp + t * row_bytes, row_bytes);
  }
}

AttendKernels attend_kernels_generic() {
  return {&attend_generic<float, float>, &attend_generic<uint16_t, uint16_t>,
          &attend_generic<float, uint16_t>, 1};
}

ExtendKernels extend_kernels_generic() {
  return {&extend_generic<float, float>, &extend_generic<uint16_t, uint16_t>,
          &extend_generic<float, uint16_t>, 1};
}

void check_kv_cache_dtype(const at::Tensor& k_cache, const at::Tensor& q) {
  const bool same = k_cache.scalar_type() == q.scalar_type();
  const bool bf16_under_f32 =
      k_cache.scalar_type() == at::kBFloat16 && q.scalar_type() == at::kFloat;
  RS_CHECK(same || bf16_under_f32, "the KV cache must have the dtype of q/k/v (",
           q.scalar_type(), ") or be bfloat16 under float32 ones, got ", k_cache.scalar_type());
}

AttendDtypes attend_dtypes(const at::Tensor& q, const at::Tensor& k_cache) {
  if (k_cache.scalar_type() != q.scalar_type()) return AttendDtypes::kF32Bf16Kv;
  return q.scalar_type() == at::kFloat ? AttendDtypes::kF32 : AttendDtypes::kBf16;
}

void check_decode_args(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k_cache,
                       const at::Tensor& v_cache, const at::Tensor& req_to_token,
                       const at::Tensor& req_pool_indices, const at::Tensor& seq_lens,
                       double scale) {
  check_paged_inputs(q, out, k_cache, v_cache, req_to_token, req_pool_indices, seq_lens, scale);
  check_size(req_pool_indices, "req_pool_indices", 0, q.size(0));
  const int64_t* lens = seq_lens.data_ptr<int64_t>();
  for (int64_t b = 0; b < seq_lens.size(0); ++b) {
    RS_CHECK(lens[b] >= 1, "seq_lens[", b, "] = ", lens[b],
             ": a decode request holds at least its new token");
  }
  check_slots(req_to_token, req_pool_indices, seq_lens, k_cache.size(0));
}

void decode_attention(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k_cache,
                      const at::Tensor& v_cache, const at::Tensor& req_to_token,
                      const at::Tensor& req_pool_indices, const at::Tensor& seq_lens,
                      double scale, int64_t sliding_window) {
  run_split_call(prepare_decode_attention(out, q, k_cache, v_cache, req_to_token,
                                          req_pool_indices, seq_lens, scale, sliding_window));
}

SplitCall prepare_decode_attention(const at::Tensor& out, const at::Tensor& q,
                                   const at::Tensor& k_cache, const at::Tensor& v_cache,
                                   const at::Tensor& req_to_token,
                                   const at::Tensor& req_pool_indices,
                                   const at::Tensor& seq_lens, double scale,
                                   int64_t sliding_window) {
  check_decode_args(out, q, k_cache, v_cache, req_to_token, req_pool_indices, seq_lens, scale);
  SplitCall call;
  if (q.size(0) == 0) return call;
  dispatch_attend_dtypes(q, k_cache, [&](auto q_elem, auto kv_elem) {
    call = decode_call<decltype(q_elem), decltype(kv_elem)>(out, q, k_cache, v_cache,
                                                            req_to_token, req_pool_indices,
                                                            seq_lens, scale, sliding_window);
  });
  return call;
}

void extend_attention(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k_cache,
                      const at::Tensor& v_cache, const at::Tensor& req_to_token,
                      const at::Tensor& req_pool_indices, const at::Tensor& seq_lens,
                      const at::Tensor& extend_seq_lens, const at::Tensor& extend_start_loc,
                      double scale, int64_t sliding_window) {
  check_paged_inputs(q, out, k_cache, v_cache, req_to_token, req_pool_indices, seq_lens, scale);
  check_tensor(extend_seq_lens, "extend_seq_lens", 1);
  check_tensor(extend_start_loc, "extend_start_loc", 1);
  check_dtype(extend_seq_lens, "extend_seq_lens", at::kLong);
  check_dtype(extend_start_loc, "extend_start_loc", at::kLong);
  const int64_t B = seq_lens.size(0);
  check_size(extend_seq_lens, "extend_seq_lens", 0, B);
  check_size(extend_start_loc, "extend_start_loc", 0, B);
  const int64_t* lens = seq_lens.data_ptr<int64_t>();
  const int64_t* ext = extend_seq_lens.data_ptr<int64_t>();
  const int64_t* start = extend_start_loc.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    RS_CHECK(ext[b] >= 0 && ext[b] <= lens[b], "extend_seq_lens[", b, "] = ", ext[b],
             " must be in [0, seq_lens[", b, "] = ", lens[b], "]");
    RS_CHECK(start[b] >= 0 && start[b] + ext[b] <= q.size(0), "request ", b,
             "'s tokens [", start[b], ", ", start[b] + ext[b], ") fall outside q's ", q.size(0),
             " rows");
  }
  check_slots(req_to_token, req_pool_indices, seq_lens, k_cache.size(0));
  dispatch_attend_dtypes(q, k_cache, [&](auto q_elem, auto kv_elem) {
    extend_impl<decltype(q_elem), decltype(kv_elem)>(
        out, q, k_cache, v_cache, req_to_token, req_pool_indices, seq_lens, extend_seq_lens,
        extend_start_loc, scale, sliding_window);
  });
}

}  // namespace radixserve::cpu
