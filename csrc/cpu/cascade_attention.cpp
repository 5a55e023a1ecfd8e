// Cascade decode attention: validation, grouping, work split, OpenMP and the merge.
#include "cpu/cascade_attention.h"

#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "cpu/bf16.h"
#include "cpu/cpu_features.h"
#include "cpu/kernel_checks.h"

namespace radixserve::cpu {
namespace {

constexpr int64_t kMinChunk = 256;  // keys per work item, at least (flash-decoding split)
constexpr int64_t kMaxSplits = 64;

struct Picked {
  AttendKernels attend;  // the fallback of both passes (one kv head at a time)
  CascadeKernels simd;   // null pointers: no vectorised build for this CPU and head_dim
};

Picked pick(int head_dim) {
  Picked p{attend_kernels_generic(), {}};
  AttendKernels a{nullptr, nullptr, nullptr, 1};
  CascadeKernels c{};
  if (active_isa() == Isa::kAvx512) {
    a = attend_kernels_avx512();
    c = cascade_kernels_avx512();
  } else if (active_isa() == Isa::kAvx2) {
    a = attend_kernels_avx2();
    c = cascade_kernels_avx2();
  }
  if (a.f32 != nullptr && head_dim % a.lanes == 0) p.attend = a;
  if (c.prefix_f32 != nullptr && head_dim % c.lanes == 0) p.simd = c;
  return p;
}

template <typename W, typename K>
void run_or(K vectorised, void (*fallback)(const W&), const W& w) {
  if (vectorised != nullptr) {
    vectorised(w);
  } else {
    fallback(w);
  }
}

void run_prefix(const Picked& k, const AttendWork<float>& w) {
  run_or(k.simd.prefix_f32, k.attend.f32, w);
}
void run_prefix(const Picked& k, const AttendWork<uint16_t>& w) {
  run_or(k.simd.prefix_bf16, k.attend.bf16, w);
}
void run_prefix(const Picked& k, const AttendWork<float, uint16_t>& w) {
  run_or(k.simd.prefix_f32_bf16kv, k.attend.f32_bf16kv, w);
}

auto suffix_kernel(const Picked& k, const SuffixWork<float>&) { return k.simd.suffix_f32; }
auto suffix_kernel(const Picked& k, const SuffixWork<uint16_t>&) { return k.simd.suffix_bf16; }
auto suffix_kernel(const Picked& k, const SuffixWork<float, uint16_t>&) {
  return k.simd.suffix_f32_bf16kv;
}

// The suffix items of w, by the vectorised kernel or else one kv head at a time by the attend
// kernel.
template <typename T, typename TKV>
void run_suffix(const Picked& k, const SuffixWork<T, TKV>& w, const AttendWork<T, TKV>& proto) {
  if (auto fn = suffix_kernel(k, w); fn != nullptr) return fn(w);
  const int64_t G = w.num_heads, D = w.head_dim, Hq = w.num_kv_heads * G;
  for (int64_t i = 0; i < w.n_items; ++i) {
    const SuffixItem& it = w.items[i];
    for (int64_t h = 0; h < w.num_kv_heads; ++h) {
      AttendWork<T, TKV> a = proto;
      a.head_off = h * D;
      a.q = w.q + (it.b * Hq + h * G) * D;
      a.n_q = 1;
      a.pos0 = it.key_end - 1;
      a.key_begin = it.key_begin;
      a.key_end = it.key_end;
      a.slots = w.table + w.pool_rows[it.b] * w.max_ctx;
      const int64_t part = it.part + h * G;
      a.m = w.m + part;
      a.l = w.l + part;
      a.acc = w.acc + part * D;
      call_attend(k.attend, a);
    }
  }
}

int64_t splits(int64_t base_items, int64_t keys, int nthreads) {
  int64_t n = (8 * nthreads + base_items - 1) / std::max<int64_t>(base_items, 1);
  n = std::min<int64_t>({n, (keys + kMinChunk - 1) / kMinChunk, kMaxSplits});
  return std::max<int64_t>(n, 1);
}

// Chunk of a key range split n ways, rounded up to whole key blocks.
int64_t chunk_of(int64_t keys, int64_t n) {
  return ((keys + n - 1) / n + kAttendKeyBlock - 1) / kAttendKeyBlock * kAttendKeyBlock;
}

struct Group {
  int64_t prefix;                // P
  std::vector<int64_t> members;  // batch indices, in batch order
  int64_t nsplit = 1;
  int64_t part0 = 0;  // first row of this group's prefix partials
  int64_t qoff = 0;   // first element of its gathered queries
};

template <typename T, typename TKV>
void cascade_impl(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k_cache,
                  const at::Tensor& v_cache, const at::Tensor& req_to_token,
                  const at::Tensor& req_pool_indices, const at::Tensor& seq_lens,
                  std::vector<Group>& groups, const std::vector<int64_t>& req_prefix,
                  double scale) {
  const int64_t B = q.size(0), Hq = q.size(1), D = q.size(2), Hkv = k_cache.size(1);
  const int64_t G = Hq / Hkv;
  const int64_t max_ctx = req_to_token.size(1);
  const int32_t* table = req_to_token.data_ptr<int32_t>();
  const int64_t* rows = req_pool_indices.data_ptr<int64_t>();
  const int64_t* lens = seq_lens.data_ptr<int64_t>();
  const T* qp = static_cast<const T*>(q.data_ptr());
  const int nthreads = at::get_num_threads();

  // Prefix items (group, kv head, chunk): partial rows (member, g), queries gathered per group.
  int64_t pre_rows = 0, qelems = 0, max_rows = 1, max_suffix = 0, work_keys = 0;
  for (Group& gr : groups) {
    const int64_t n = static_cast<int64_t>(gr.members.size());
    gr.nsplit = splits(static_cast<int64_t>(groups.size()) * Hkv, gr.prefix, nthreads);
    gr.part0 = pre_rows;
    gr.qoff = qelems;
    pre_rows += Hkv * gr.nsplit * n * G;
    qelems += n * Hq * D;
    max_rows = std::max(max_rows, n * G);
    work_keys += gr.prefix * n;
  }
  for (int64_t b = 0; b < B; ++b) {
    max_suffix = std::max(max_suffix, lens[b] - req_prefix[b]);
    work_keys += lens[b] - req_prefix[b];
  }
  // Suffix items (request, chunk) cover every kv head; partial rows (request, chunk, head).
  const int64_t ssplit = splits(B, max_suffix, nthreads);
  const int64_t suf_rows = B * ssplit * Hq;
  std::vector<SuffixItem> sitems;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t first = req_prefix[b];
    const int64_t chunk = chunk_of(lens[b] - first, ssplit);
    for (int64_t s = 0; s < ssplit; ++s) {
      const int64_t kb = std::min(lens[b], first + s * chunk);
      sitems.push_back({b, kb, std::min(lens[b], kb + chunk), pre_rows + (b * ssplit + s) * Hq});
    }
  }
  std::vector<T> qg(qelems);
  for (const Group& gr : groups)
    for (size_t i = 0; i < gr.members.size(); ++i)
      std::copy_n(qp + gr.members[i] * Hq * D, Hq * D, qg.data() + gr.qoff + i * Hq * D);

  const int region_threads = work_keys * Hq * D < (int64_t{1} << 16) ? 1 : nthreads;
  // The suffix items run in a few runs of consecutive items (one per thread when alone), each
  // one kernel call that prefetches across its items; runs are balanced by key count.
  const int64_t n_sitems = static_cast<int64_t>(sitems.size());
  const int64_t n_runs = std::min<int64_t>(n_sitems, region_threads == 1 ? 1 : 4 * nthreads);
  std::vector<int64_t> run_start{0};
  {
    int64_t total = 0, seen = 0;
    for (const SuffixItem& it : sitems) total += it.key_end - it.key_begin;
    for (int64_t i = 0; i < n_sitems && static_cast<int64_t>(run_start.size()) < n_runs; ++i) {
      seen += sitems[i].key_end - sitems[i].key_begin;
      const int64_t r = static_cast<int64_t>(run_start.size());
      if (seen * n_runs >= r * std::max<int64_t>(total, 1) && i + 1 < n_sitems)
        run_start.push_back(i + 1);
    }
    run_start.push_back(n_sitems);
  }

  struct Item {
    int64_t group;  // -1: a run of suffix items
    int64_t idx;    // run or group
    int64_t h, s;
  };
  std::vector<Item> items;
  // The kv heads of one key chunk one after another: their rows share cache lines and pages.
  for (int64_t gi = 0; gi < static_cast<int64_t>(groups.size()); ++gi)
    for (int64_t s = 0; s < groups[gi].nsplit; ++s)
      for (int64_t h = 0; h < Hkv; ++h) items.push_back({gi, gi, h, s});
  for (size_t r = 0; r + 1 < run_start.size(); ++r)
    items.push_back({-1, static_cast<int64_t>(r), 0, 0});

  // Uninitialised: every partial row belongs to exactly one item, whose kernel initialises it.
  const auto floats = [](int64_t n) { return std::unique_ptr<float[]>(new float[n]); };
  const std::unique_ptr<float[]> m = floats(pre_rows + suf_rows), l = floats(pre_rows + suf_rows);
  const std::unique_ptr<float[]> acc = floats((pre_rows + suf_rows) * D);
  const Picked kern = pick(static_cast<int>(D));
  AttendWork<T, TKV> proto{};
  proto.window = -1;
  proto.k_cache = static_cast<const TKV*>(k_cache.data_ptr());
  proto.v_cache = static_cast<const TKV*>(v_cache.data_ptr());
  proto.slot_stride = Hkv * D;
  proto.num_heads = static_cast<int>(G);
  proto.head_dim = static_cast<int>(D);
  proto.scale = static_cast<float>(scale);
  proto.q_stride = Hq * D;
  SuffixWork<T, TKV> sproto{};
  sproto.q = qp;
  sproto.table = table;
  sproto.max_ctx = max_ctx;
  sproto.pool_rows = rows;
  sproto.k_cache = proto.k_cache;
  sproto.v_cache = proto.v_cache;
  sproto.num_kv_heads = static_cast<int>(Hkv);
  sproto.num_heads = static_cast<int>(G);
  sproto.head_dim = static_cast<int>(D);
  sproto.scale = proto.scale;
  sproto.m = m.get();
  sproto.l = l.get();
  sproto.acc = acc.get();
  const int64_t n_items = static_cast<int64_t>(items.size());

#pragma omp parallel num_threads(region_threads)
  {
    const std::unique_ptr<float[]> qbuf =
        floats(std::max({max_rows * D, Hq * D, prefix_scratch_floats(D)}));
    const std::unique_ptr<float[]> kvbuf = floats(2 * kAttendKeyBlock * D);
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < n_items; ++it) {
      const Item& item = items[it];
      AttendWork<T, TKV> w = proto;
      w.head_off = item.h * D;
      w.qbuf = qbuf.get();
      w.kvbuf = kvbuf.get();
      if (item.group >= 0) {
        const Group& gr = groups[item.group];
        const int64_t n = static_cast<int64_t>(gr.members.size());
        const int64_t chunk = chunk_of(gr.prefix, gr.nsplit);
        w.q = qg.data() + gr.qoff + item.h * G * D;
        w.n_q = n;
        w.pos0 = gr.prefix - 1;  // every query sees every prefix key
        w.key_begin = item.s * chunk;
        w.key_end = std::min(gr.prefix, (item.s + 1) * chunk);
        w.slots = table + rows[gr.members[0]] * max_ctx;
        const int64_t part = gr.part0 + (item.h * gr.nsplit + item.s) * n * G;
        w.m = m.get() + part;
        w.l = l.get() + part;
        w.acc = acc.get() + part * D;
        run_prefix(kern, w);
      } else {
        SuffixWork<T, TKV> sw = sproto;
        sw.items = sitems.data() + run_start[item.idx];
        sw.n_items = run_start[item.idx + 1] - run_start[item.idx];
        sw.qbuf = qbuf.get();
        run_suffix(kern, sw, w);
      }
    }
  }

  // Where each request's prefix partials are: its group and its index among the members.
  std::vector<int64_t> group_of(B, -1), member_of(B, 0);
  for (int64_t gi = 0; gi < static_cast<int64_t>(groups.size()); ++gi)
    for (size_t i = 0; i < groups[gi].members.size(); ++i) {
      group_of[groups[gi].members[i]] = gi;
      member_of[groups[gi].members[i]] = static_cast<int64_t>(i);
    }
  T* op = static_cast<T*>(out.data_ptr());
  const int merge_threads = B * Hq * D < (int64_t{1} << 14) ? 1 : nthreads;
#pragma omp parallel num_threads(merge_threads)
  {
    std::vector<int64_t> parts;
    std::vector<float> wts, row(D);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < B * Hq; ++bh) {
      const int64_t b = bh / Hq, hq = bh % Hq, h = hq / G, g = hq % G;
      parts.clear();
      if (group_of[b] >= 0) {
        const Group& gr = groups[group_of[b]];
        const int64_t n = static_cast<int64_t>(gr.members.size());
        for (int64_t s = 0; s < gr.nsplit; ++s)
          parts.push_back(gr.part0 + (h * gr.nsplit + s) * n * G + member_of[b] * G + g);
      }
      for (int64_t s = 0; s < ssplit; ++s) parts.push_back(pre_rows + (b * ssplit + s) * Hq + hq);
      // out = sum_s exp(m_s - M) acc_s / sum_s exp(m_s - M) l_s
      float mx = -INFINITY;
      for (int64_t p : parts) mx = std::max(mx, m[p]);
      wts.assign(parts.size(), 0.0f);
      float denom = 0.0f;
      for (size_t i = 0; i < parts.size(); ++i) {
        wts[i] = m[parts[i]] == -INFINITY ? 0.0f : std::exp(m[parts[i]] - mx);
        denom += wts[i] * l[parts[i]];
      }
      const float inv = denom > 0.0f ? 1.0f / denom : 0.0f;
      // Whole rows at a time (contiguous, so the compiler vectorises); same summation order.
      std::fill(row.begin(), row.end(), 0.0f);
      for (size_t i = 0; i < parts.size(); ++i) {
        const float wi = wts[i];
        const float* a = acc.get() + parts[i] * D;
        for (int64_t d = 0; d < D; ++d) row[d] += wi * a[d];
      }
      T* o = op + bh * D;
      for (int64_t d = 0; d < D; ++d) store_f32(o + d, row[d] * inv);
    }
  }
}

}  // namespace

void cascade_decode_attention(const at::Tensor& out, const at::Tensor& q,
                              const at::Tensor& k_cache, const at::Tensor& v_cache,
                              const at::Tensor& req_to_token, const at::Tensor& req_pool_indices,
                              const at::Tensor& seq_lens, const at::Tensor& group_ids,
                              const at::Tensor& group_prefix_lens, double scale,
                              int64_t sliding_window) {
  check_decode_args(out, q, k_cache, v_cache, req_to_token, req_pool_indices, seq_lens, scale);
  check_tensor(group_ids, "group_ids", 1);
  check_tensor(group_prefix_lens, "group_prefix_lens", 1);
  check_dtype(group_ids, "group_ids", at::kLong);
  check_dtype(group_prefix_lens, "group_prefix_lens", at::kLong);
  const int64_t B = q.size(0);
  check_size(group_ids, "group_ids", 0, B);
  const int64_t num_groups = group_prefix_lens.size(0);
  const int64_t* gid = group_ids.data_ptr<int64_t>();
  const int64_t* plen = group_prefix_lens.data_ptr<int64_t>();
  const int64_t* rows = req_pool_indices.data_ptr<int64_t>();
  const int64_t* lens = seq_lens.data_ptr<int64_t>();
  const int64_t max_ctx = req_to_token.size(1);
  const int32_t* table = req_to_token.data_ptr<int32_t>();

  std::vector<Group> groups(num_groups);
  for (int64_t gi = 0; gi < num_groups; ++gi) groups[gi].prefix = plen[gi];
  for (int64_t b = 0; b < B; ++b) {
    RS_CHECK(gid[b] >= -1 && gid[b] < num_groups, "group_ids[", b, "] = ", gid[b],
             " is out of range [-1, ", num_groups, ")");
    if (gid[b] >= 0) groups[gid[b]].members.push_back(b);
  }
  std::vector<int64_t> req_prefix(B, 0);
  for (int64_t gi = 0; gi < num_groups; ++gi) {
    const Group& gr = groups[gi];
    if (gr.members.empty()) continue;
    const int32_t* lead = table + rows[gr.members[0]] * max_ctx;
    for (int64_t b : gr.members) {
      RS_CHECK(gr.prefix >= 0 && gr.prefix <= lens[b], "group_prefix_lens[", gi, "] = ",
               gr.prefix, " must be in [0, seq_lens[", b, "] = ", lens[b], "]");
      const int32_t* own = table + rows[b] * max_ctx;
      RS_CHECK(std::equal(lead, lead + gr.prefix, own), "request ", b,
               " does not share the KV slots of group ", gi, "'s prefix of ", gr.prefix,
               " tokens");
      req_prefix[b] = gr.prefix;
    }
  }
  // Groups worth a shared pass: a prefix and members; the rest attend alone (req_prefix 0).
  std::vector<Group> used;
  for (Group& gr : groups) {
    if (gr.members.empty()) continue;
    if (gr.prefix == 0) continue;
    used.push_back(std::move(gr));
  }
  if (B == 0) return;
  if (sliding_window > 0 || used.empty()) {
    decode_attention(out, q, k_cache, v_cache, req_to_token, req_pool_indices, seq_lens, scale,
                     sliding_window);
    return;
  }
  dispatch_attend_dtypes(q, k_cache, [&](auto q_elem, auto kv_elem) {
    cascade_impl<decltype(q_elem), decltype(kv_elem)>(out, q, k_cache, v_cache, req_to_token,
                                                      req_pool_indices, seq_lens, used,
                                                      req_prefix, scale);
  });
}

}  // namespace radixserve::cpu
