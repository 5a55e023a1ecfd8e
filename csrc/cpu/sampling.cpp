// The CPU sampler. The definition below is followed exactly by sample_ref in layers/sampler.py.
//
// Per row (raw logits l, float32):
//  1. penalties where count > 0, in this order: repetition (l > 0 ? l / r : l * r),
//     frequency (l - f * count), presence (l - p); then l + logit_bias; then -inf where the
//     row's packed token bitmask (a grammar's; bit t % 32 of word t / 32) clears token t.
//  2. temperature 0: the token is argmax(l) (first maximum).
//  3. otherwise z = l / T, m = max(z) (not finite: argmax(z)), e = exp(z - m) (float32),
//     S = sum(e) in double. Order the tokens by (z descending, id ascending); the token at
//     position j is kept while j < top_k, and (top_p < 1) exclusive-prefix-sum(e) < top_p * S,
//     and (min_p > 0) e >= min_p (that is p >= min_p * p_max, as e_max = 1). Position 0 is
//     always kept, and the cut is the first position failing a test.
//  4. draw: w = e on kept tokens, 0 elsewhere, walked in token-id order in blocks of
//     kSampleBlock (a multiple of 8): a block's sum is ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))
//     where lane l is the sequential double sum of its elements j % 8 == l; the running sum
//     over blocks is sequential, target = u * total; the first block whose running sum exceeds target, then inside it
//     the first token whose sequential in-block sum exceeds target - (running sum before the
//     block). When rounding leaves no such token, the last positive-weight token before the
//     end of the block (or of the row) is taken, so a masked token is never drawn.
//  5. logprobs: log_softmax of the raw logits (before penalties, bias, temperature), as SGLang
//     returns them; top-N ids ordered by (logit descending, id ascending).
// The top-k/top-p/min-p kept set is found without sorting the vocabulary: tokens with
// z >= m - delta are gathered and sorted, widening delta until the cut provably falls inside.
#include "cpu/sampling.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "cpu/cpu_features.h"
#include "cpu/kernel_checks.h"
#include "cpu/sampling_simd.h"

namespace radixserve::cpu {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// ---- portable row primitives (same contracts as sampling_avx512.h) ----
namespace portable {

float row_max(const float* x, int64_t n) {
  float m = kNegInf;
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

int64_t row_argmax(const float* x, int64_t n) {
  const float m = row_max(x, n);
  for (int64_t i = 0; i < n; ++i)
    if (x[i] == m) return i;
  return 0;
}

void row_div(const float* x, float t, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] / t;
}

double row_exp_sum(const float* z, float m, float* e, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    e[i] = std::exp(z[i] - m);
    s += e[i];
  }
  return s;
}

int64_t row_gather_ge(const float* z, int64_t n, float thr, int32_t* ids, float* next_max) {
  int64_t count = 0;
  float below = kNegInf;
  for (int64_t i = 0; i < n; ++i) {
    if (z[i] >= thr)
      ids[count++] = static_cast<int32_t>(i);
    else if (z[i] > below)
      below = z[i];
  }
  *next_max = below;
  return count;
}

void block_sums(const float* w, int64_t n, int64_t block, double* sums) {
  for (int64_t b = 0; b * block < n; ++b) {
    double l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t i = b * block; i < std::min(n, (b + 1) * block); ++i) l[i % 8] += w[i];
    sums[b] = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
  }
}

void row_apply_bitmask(const float* x, const int32_t* mask, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    out[i] = (static_cast<uint32_t>(mask[i >> 5]) >> (i & 31)) & 1u ? x[i] : kNegInf;
}

}  // namespace portable

struct Ops {
  float (*row_max)(const float*, int64_t);
  int64_t (*row_argmax)(const float*, int64_t);
  void (*row_div)(const float*, float, float*, int64_t);
  double (*row_exp_sum)(const float*, float, float*, int64_t);
  int64_t (*row_gather_ge)(const float*, int64_t, float, int32_t*, float*);
  void (*block_sums)(const float*, int64_t, int64_t, double*);
  void (*row_apply_bitmask)(const float*, const int32_t*, float*, int64_t);
};

constexpr Ops kPortable{portable::row_max,       portable::row_argmax,
                        portable::row_div,       portable::row_exp_sum,
                        portable::row_gather_ge, portable::block_sums,
                        portable::row_apply_bitmask};
constexpr Ops kAvx512{sampling_avx512::row_max,       sampling_avx512::row_argmax,
                      sampling_avx512::row_div,       sampling_avx512::row_exp_sum,
                      sampling_avx512::row_gather_ge, sampling_avx512::block_sums,
                      sampling_avx512::row_apply_bitmask};
constexpr Ops kAvx2{sampling_avx2::row_max,       sampling_avx2::row_argmax,
                    sampling_avx2::row_div,       sampling_avx2::row_exp_sum,
                    sampling_avx2::row_gather_ge, sampling_avx2::block_sums,
                    sampling_avx2::row_apply_bitmask};

bool cpu_has(const std::string& isa) {
  const CpuFeatures& f = detected_features();  // the kernels' detection (cpu_features.h)
  if (isa == "avx512") return f.avx512;
  if (isa == "avx2") return f.avx2;
  return isa == "generic";
}

std::string g_isa = isa_name(best_isa());

const Ops& active_ops() {
  if (g_isa == "avx512") return kAvx512;
  if (g_isa == "avx2") return kAvx2;
  return kPortable;
}

// True when the packed row allows every token of [0, vocab): such a row (a request without a
// grammar) is skipped, so it costs one scan of its words, which stops at the first cleared bit.
bool bitmask_allows_all(const int32_t* mask, int64_t vocab) {
  const int64_t full = vocab / 32, rest = vocab % 32;
  for (int64_t w = 0; w < full; ++w)
    if (mask[w] != -1) return false;
  if (rest == 0) return true;
  const uint32_t need = (1u << rest) - 1u;
  return (static_cast<uint32_t>(mask[full]) & need) == need;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

struct Cand {
  float z;
  int32_t id;
};

inline bool before(const Cand& a, const Cand& b) { return a.z > b.z || (a.z == b.z && a.id < b.id); }

struct Scratch {
  std::vector<float> z, e;
  std::vector<int32_t> ids;
  std::vector<Cand> cands;
  std::vector<double> sums;
  void reserve(int64_t vocab) {
    z.resize(vocab);
    e.resize(vocab);
    ids.resize(vocab);
    cands.resize(vocab);
    sums.resize(vocab / kSampleBlock + 2);
  }
};

struct RowParams {
  float temperature, top_p, min_p, freq, pres, rep;
  int64_t top_k;
  double u;
};

// Step 4 over every token (no truncation): weights e[0:V].
int64_t draw_dense(const Ops& ops, const float* e, int64_t vocab, double u, Scratch& s) {
  const int64_t nb = (vocab + kSampleBlock - 1) / kSampleBlock;
  ops.block_sums(e, vocab, kSampleBlock, s.sums.data());
  double total = 0.0;
  for (int64_t b = 0; b < nb; ++b) total += s.sums[b];
  const double target = u * total;
  double run = 0.0;
  for (int64_t b = 0; b < nb; ++b) {
    const double next = run + s.sums[b];
    if (next > target) {
      const double t2 = target - run;
      const int64_t lo = b * kSampleBlock, hi = std::min(vocab, lo + kSampleBlock);
      double acc = 0.0;
      for (int64_t i = lo; i < hi; ++i) {
        acc += e[i];
        if (acc > t2) return i;
      }
      for (int64_t i = hi - 1; i >= lo; --i)
        if (e[i] > 0.0f) return i;
      return lo;
    }
    run = next;
  }
  for (int64_t i = vocab - 1; i >= 0; --i)
    if (e[i] > 0.0f) return i;
  return 0;
}

// Step 4 over the kept tokens kept[0:n], sorted by id; empty blocks add 0 (an exact no-op).
int64_t draw_sparse(const float* e, const Cand* kept, int64_t n, double u) {
  // Block sums as block_sums() defines them; absent (zero) weights are exact no-ops.
  auto block_sum = [&](int64_t from, int64_t to) {
    double l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t i = from; i < to; ++i) l[kept[i].id % 8] += e[kept[i].id];
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
  };
  auto block_end = [&](int64_t j) {
    const int64_t blk = kept[j].id / kSampleBlock;
    while (j < n && kept[j].id / kSampleBlock == blk) ++j;
    return j;
  };
  double total = 0.0;
  for (int64_t j = 0; j < n; j = block_end(j)) total += block_sum(j, block_end(j));
  const double target = u * total;
  double run = 0.0;
  int64_t last_pos = -1;
  for (int64_t j = 0; j < n;) {
    const int64_t end = block_end(j);
    const double next = run + block_sum(j, end);
    if (next > target) {
      const double t2 = target - run;
      double acc = 0.0;
      for (int64_t i = j; i < end; ++i) {
        acc += e[kept[i].id];
        if (acc > t2) return kept[i].id;
      }
      for (int64_t i = end - 1; i >= j; --i)
        if (e[kept[i].id] > 0.0f) return kept[i].id;
    }
    for (int64_t i = j; i < end; ++i)
      if (e[kept[i].id] > 0.0f) last_pos = i;
    run = next;
    j = end;
  }
  return last_pos >= 0 ? kept[last_pos].id : kept[0].id;
}

// Step 3: the number of kept tokens; s.cands[0:cut] holds them in (z desc, id asc) order.
int64_t kept_prefix(const Ops& ops, const float* z, const float* e, int64_t vocab, float m, double S,
                    const RowParams& p, Scratch& s) {
  const bool use_p = p.top_p < 1.0f, use_min_p = p.min_p > 0.0f;
  const double thr_p = static_cast<double>(p.top_p) * S;
  const int64_t k = p.top_k;
  for (float delta = 2.0f;; delta *= 2.0f) {
    const float thr = delta > 64.0f ? kNegInf : m - delta;
    float next_max = kNegInf;
    const int64_t n = ops.row_gather_ge(z, vocab, thr, s.ids.data(), &next_max);
    // The first token outside the gathered set: lowest id among the largest z below thr.
    int64_t next_id = -2;  // -2: not looked up yet, -1: none
    auto first_outside = [&]() {
      if (next_id == -2) {
        next_id = -1;
        if (n < vocab)
          for (int64_t i = 0; i < vocab; ++i)
            if (z[i] == next_max && !(z[i] >= thr)) {
              next_id = i;
              break;
            }
      }
      return next_id;
    };
    // Cheap check that the cut lies inside (or right after) the gathered set before sorting.
    bool enough = n >= k || n == vocab;
    if (!enough && use_p) {
      double mass = 0.0;
      for (int64_t j = 0; j < n; ++j) mass += e[s.ids[j]];
      enough = mass >= thr_p * (1.0 - 1e-9);
    }
    if (!enough && use_min_p) enough = first_outside() < 0 || e[first_outside()] < p.min_p;
    if (!enough && thr == kNegInf) enough = true;  // only NaNs are left outside
    if (!enough) continue;
    for (int64_t j = 0; j < n; ++j) s.cands[j] = Cand{z[s.ids[j]], s.ids[j]};
    const int64_t limit = std::min(k, n);
    // Select the first `limit` in O(n), then sort only those (the order is total: ties by id).
    if (limit < n)
      std::nth_element(s.cands.begin(), s.cands.begin() + limit, s.cands.begin() + n, before);
    std::sort(s.cands.begin(), s.cands.begin() + limit, before);
    double excl = 0.0;
    for (int64_t j = 0; j < limit; ++j) {
      const float ej = e[s.cands[j].id];
      if (j > 0 && ((use_p && excl >= thr_p) || (use_min_p && ej < p.min_p))) return j;
      excl += ej;
    }
    if (limit == k || n == vocab || first_outside() < 0) return limit;
    if ((use_p && excl >= thr_p) || (use_min_p && e[first_outside()] < p.min_p)) return limit;
  }
}

// Step 1 for one token: the penalties of a token generated `count` times.
inline float penalise(float x, int32_t count, const RowParams& p) {
  if (count <= 0) return x;
  if (p.rep != 1.0f) x = x > 0.0f ? x / p.rep : x * p.rep;
  x = x - p.freq * static_cast<float>(count);
  x = x - p.pres;
  return x;
}

// Step 1 for one row: the penalised logits, `raw` itself when nothing applies, else s.z.
// mask: the row's packed token bitmask, or nullptr when it allows every token.
const float* penalised_row(const Ops& ops, const float* raw, const int32_t* counts,
                           const float* bias, const int32_t* mask, int64_t vocab,
                           const RowParams& p, Scratch& s) {
  if (mask != nullptr && counts == nullptr && bias == nullptr) {
    ops.row_apply_bitmask(raw, mask, s.z.data(), vocab);  // the copy and the mask in one pass
    return s.z.data();
  }
  if (counts == nullptr && bias == nullptr) return raw;
  float* w = s.z.data();
  std::copy(raw, raw + vocab, w);
  if (counts != nullptr)
    for (int64_t i = 0; i < vocab; ++i) w[i] = penalise(w[i], counts[i], p);
  if (bias != nullptr)
    for (int64_t i = 0; i < vocab; ++i) w[i] = w[i] + bias[i];
  if (mask != nullptr) ops.row_apply_bitmask(w, mask, w, vocab);
  return w;
}

// Steps 2-3 for one row of penalised logits l (l may be s.z).
struct RowDist {
  int64_t argmax;  // >= 0: no distribution (temperature 0, or no finite logit): this token
  bool dense;      // every token kept: weights s.e[0:vocab] summing to `total`
  int64_t cut;     // else the kept tokens s.cands[0:cut], sorted by id
  double total;    // dense rows only
};

RowDist row_distribution(const Ops& ops, const float* l, int64_t vocab, const RowParams& p,
                         Scratch& s) {
  if (p.temperature == 0.0f) return {ops.row_argmax(l, vocab), false, 0, 0.0};
  float* z = s.z.data();
  ops.row_div(l, p.temperature, z, vocab);
  const float m = ops.row_max(z, vocab);
  if (!std::isfinite(m)) return {ops.row_argmax(z, vocab), false, 0, 0.0};
  float* e = s.e.data();
  const double S = ops.row_exp_sum(z, m, e, vocab);
  const bool truncated = p.top_k < vocab || p.top_p < 1.0f || p.min_p > 0.0f;
  if (!truncated) return {-1, true, vocab, S};
  const int64_t cut = kept_prefix(ops, z, e, vocab, m, S, p, s);
  std::sort(s.cands.begin(), s.cands.begin() + cut,
            [](const Cand& a, const Cand& b) { return a.id < b.id; });
  return {-1, false, cut, 0.0};
}

// Step 4 with uniform u over a row's distribution (weights s.e, zeros included).
int64_t draw_row(const Ops& ops, const RowDist& d, int64_t vocab, double u, Scratch& s) {
  if (d.dense) return draw_dense(ops, s.e.data(), vocab, u, s);
  return draw_sparse(s.e.data(), s.cands.data(), d.cut, u);
}

int64_t sample_row(const Ops& ops, const float* raw, const int32_t* counts, const float* bias,
                   const int32_t* mask, int64_t vocab, const RowParams& p, Scratch& s) {
  const float* l = penalised_row(ops, raw, counts, bias, mask, vocab, p, s);
  const RowDist d = row_distribution(ops, l, vocab, p, s);
  return d.argmax >= 0 ? d.argmax : draw_row(ops, d, vocab, p.u, s);
}

// One request's verify rows (see verify_drafts in sampling.h); returns the accepted count and
// writes the token after them to *next.
int64_t verify_request(const Ops& ops, const float* raw, int64_t vocab, const int32_t* counts,
                       const float* bias, const int64_t* drafts, int64_t k, RowParams p,
                       uint64_t seed, uint64_t step, Scratch& s, int64_t* next) {
  for (int64_t j = 0;; ++j) {
    const float* row = raw + j * vocab;
    p.u = sampling_uniform(seed, step + j);
    const float* l = penalised_row(ops, row, counts, bias, nullptr, vocab, p, s);
    if (counts != nullptr) {
      // Drafts 0..j-1 count as generated at position j: redo their logits with those counts.
      for (int64_t a = 0; a < j; ++a) {
        const int64_t t = drafts[a];
        int32_t extra = 0;
        for (int64_t b = 0; b < j; ++b) extra += drafts[b] == t;
        s.z[t] = penalise(row[t], counts[t] + extra, p) + (bias != nullptr ? bias[t] : 0.0f);
      }
    }
    const RowDist d = row_distribution(ops, l, vocab, p, s);
    if (j == k) {  // every draft accepted: the sampler's own token at this step
      *next = d.argmax >= 0 ? d.argmax : draw_row(ops, d, vocab, p.u, s);
      return k;
    }
    const int64_t t = drafts[j];
    if (d.argmax >= 0) {  // greedy (or nothing finite): accept exactly the argmax
      if (t == d.argmax) continue;
      *next = d.argmax;
      return j;
    }
    // p(t) = w[t] / sum(w) over the kept tokens.
    double kept_total = d.total;
    bool kept = d.dense;
    if (!d.dense) {
      kept_total = 0.0;
      for (int64_t i = 0; i < d.cut; ++i) {
        kept_total += s.e[s.cands[i].id];
        kept = kept || s.cands[i].id == t;
      }
    }
    const double p_t = kept ? static_cast<double>(s.e[t]) / kept_total : 0.0;
    if (sampling_uniform(seed ^ kAcceptSalt, step + j) < p_t) continue;
    // Rejected: draw from the residual max(0, p - 1{t}), that is p without t, renormalised.
    if (kept) s.e[t] = 0.0f;
    *next = draw_row(ops, d, vocab, p.u, s);
    return j;
  }
}

// Step 5 for one row: chosen-token logprob and the top-n (logit desc, id asc).
void logprobs_row(const Ops& ops, const float* raw, int64_t vocab, int64_t tok, int64_t n,
                  Scratch& s, float* lp, float* top_vals, int64_t* top_ids) {
  const float m = ops.row_max(raw, vocab);
  const double S = ops.row_exp_sum(raw, m, s.e.data(), vocab);
  const double lse = static_cast<double>(m) + std::log(S);
  *lp = static_cast<float>(raw[tok] - lse);
  if (n == 0) return;
  Cand* best = s.cands.data();  // sorted (value desc, id asc), size <= n
  int64_t size = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    const float v = raw[i];
    if (size == n && !(v > best[n - 1].z)) continue;
    int64_t pos = size < n ? size : n - 1;
    while (pos > 0 && best[pos - 1].z < v) {
      best[pos] = best[pos - 1];
      --pos;
    }
    best[pos] = Cand{v, static_cast<int32_t>(i)};
    if (size < n) ++size;
  }
  for (int64_t j = 0; j < n; ++j) {
    top_vals[j] = static_cast<float>(best[j].z - lse);
    top_ids[j] = best[j].id;
  }
}

// A packed token bitmask: CPU int32 [bs, ceil(vocab / 32)].
void check_bitmask(const at::Tensor& t, const char* op, int64_t bs, int64_t vocab) {
  const int64_t words = (vocab + 31) / 32;
  RS_CHECK(t.device().is_cpu(), op, ": token_bitmask must be a CPU tensor");
  RS_CHECK(t.scalar_type() == at::kInt, op, ": token_bitmask must be int32, got ",
                    t.scalar_type());
  RS_CHECK(t.dim() == 2 && t.size(0) == bs && t.size(1) == words, op,
                    ": token_bitmask must have shape [", bs, ", ", words, "] (ceil(vocab / 32) ",
                    "words per row), got ", t.sizes());
}

void check_vec(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t bs,
               const char* op = "sample") {
  RS_CHECK(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor");
  RS_CHECK(t.scalar_type() == dtype, op, ": ", name, " must be ", dtype, ", got ",
                    t.scalar_type());
  RS_CHECK(t.dim() == 1 && t.size(0) == bs, op, ": ", name, " must have shape [",
                    bs, "], got ", t.sizes());
}

void check_mat(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t bs,
               int64_t vocab, const char* op = "sample") {
  RS_CHECK(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor");
  RS_CHECK(t.scalar_type() == dtype, op, ": ", name, " must be ", dtype, ", got ",
                    t.scalar_type());
  RS_CHECK(t.dim() == 2 && t.size(0) == bs && t.size(1) == vocab, op, ": ", name,
                    " must have shape [", bs, ", ", vocab, "], got ", t.sizes());
}

// The inputs sample() and verify_drafts() share, checked, made contiguous, one RowParams per
// row (u left 0: the callers draw with their own steps).
struct SamplerInputs {
  int64_t bs, vocab;
  at::Tensor logits, counts_t, bias_t;
  std::vector<RowParams> params;

  SamplerInputs(const char* op, const at::Tensor& logits_in, const at::Tensor& temperatures,
                const at::Tensor& top_ps, const at::Tensor& top_ks, const at::Tensor& min_ps,
                const at::Tensor& seeds, const at::Tensor& steps,
                const std::optional<at::Tensor>& frequency_penalties,
                const std::optional<at::Tensor>& presence_penalties,
                const std::optional<at::Tensor>& repetition_penalties,
                const std::optional<at::Tensor>& output_token_counts,
                const std::optional<at::Tensor>& logit_bias, bool params_per_request = false) {
    RS_CHECK(logits_in.device().is_cpu(), op, ": logits must be a CPU tensor");
    RS_CHECK(logits_in.scalar_type() == at::kFloat, op, ": logits must be float32, got ",
                      logits_in.scalar_type());
    RS_CHECK(logits_in.dim() == 2 && logits_in.size(1) > 0, op,
                      ": logits must have shape [bs, vocab] with vocab > 0, got ",
                      logits_in.sizes());
    // One parameter row per logits row, or (params_per_request) per request of several rows.
    bs = params_per_request ? temperatures.size(0) : logits_in.size(0);
    vocab = logits_in.size(1);
    RS_CHECK(vocab < (int64_t{1} << 31), op, ": vocab too large");
    check_vec(temperatures, "temperatures", at::kFloat, bs, op);
    check_vec(top_ps, "top_ps", at::kFloat, bs, op);
    check_vec(top_ks, "top_ks", at::kInt, bs, op);
    check_vec(min_ps, "min_ps", at::kFloat, bs, op);
    check_vec(seeds, "seeds", at::kLong, bs, op);
    check_vec(steps, "steps", at::kLong, bs, op);
    const bool any_pen = frequency_penalties || presence_penalties || repetition_penalties;
    RS_CHECK(!any_pen || output_token_counts, op,
                      ": penalties need output_token_counts");
    if (frequency_penalties)
      check_vec(*frequency_penalties, "frequency_penalties", at::kFloat, bs, op);
    if (presence_penalties) check_vec(*presence_penalties, "presence_penalties", at::kFloat, bs, op);
    if (repetition_penalties)
      check_vec(*repetition_penalties, "repetition_penalties", at::kFloat, bs, op);
    if (output_token_counts)
      check_mat(*output_token_counts, "output_token_counts", at::kInt, bs, vocab, op);
    if (logit_bias) check_mat(*logit_bias, "logit_bias", at::kFloat, bs, vocab, op);

    logits = logits_in.contiguous();
    counts_t = output_token_counts ? output_token_counts->contiguous() : at::Tensor();
    bias_t = logit_bias ? logit_bias->contiguous() : at::Tensor();
    auto vec = [](const std::optional<at::Tensor>& t) {
      return t ? t->contiguous() : at::Tensor();
    };
    const at::Tensor freq = vec(frequency_penalties), pres = vec(presence_penalties),
                     rep = vec(repetition_penalties);
    const at::Tensor temps = temperatures.contiguous(), tps = top_ps.contiguous(),
                     tks = top_ks.contiguous(), mps = min_ps.contiguous();
    params.resize(bs);
    for (int64_t r = 0; r < bs; ++r) {
      RowParams& p = params[r];
      p.temperature = temps.data_ptr<float>()[r];
      p.top_p = tps.data_ptr<float>()[r];
      p.min_p = mps.data_ptr<float>()[r];
      const int64_t k = tks.data_ptr<int32_t>()[r];
      p.freq = freq.defined() ? freq.data_ptr<float>()[r] : 0.0f;
      p.pres = pres.defined() ? pres.data_ptr<float>()[r] : 0.0f;
      p.rep = rep.defined() ? rep.data_ptr<float>()[r] : 1.0f;
      p.u = 0.0;
      RS_CHECK(std::isfinite(p.temperature) && p.temperature >= 0.0f, op,
                        ": temperatures must be finite and >= 0, got ", p.temperature, " in row ",
                        r);
      RS_CHECK(p.top_p > 0.0f && p.top_p <= 1.0f, op, ": top_ps must be in (0, 1], got ",
                        p.top_p, " in row ", r);
      RS_CHECK(p.min_p >= 0.0f && p.min_p <= 1.0f, op,
                        ": min_ps must be in [0, 1], got ", p.min_p, " in row ", r);
      RS_CHECK(k >= 1, op, ": top_ks must be >= 1, got ", k, " in row ", r);
      RS_CHECK(p.rep > 0.0f && std::isfinite(p.rep), op,
                        ": repetition_penalties must be > 0, got ", p.rep, " in row ", r);
      RS_CHECK(std::isfinite(p.freq) && std::isfinite(p.pres), op,
                        ": frequency/presence penalties must be finite (row ", r, ")");
      p.top_k = std::min(k, vocab);
    }
  }
  const int32_t* counts() const { return counts_t.defined() ? counts_t.data_ptr<int32_t>() : nullptr; }
  const float* bias() const { return bias_t.defined() ? bias_t.data_ptr<float>() : nullptr; }
};

}  // namespace

double sampling_uniform(uint64_t seed, uint64_t step) {
  return static_cast<double>(splitmix64(splitmix64(seed) ^ step) >> 11) * 0x1.0p-53;
}

at::Tensor sampling_uniforms(const at::Tensor& seeds, const at::Tensor& steps) {
  const int64_t bs = seeds.dim() == 1 ? seeds.size(0) : -1;
  check_vec(seeds, "seeds", at::kLong, bs);
  check_vec(steps, "steps", at::kLong, bs);
  at::Tensor out = at::empty({bs}, at::kDouble);
  const auto* sd = seeds.contiguous().data_ptr<int64_t>();
  const auto* st = steps.contiguous().data_ptr<int64_t>();
  for (int64_t r = 0; r < bs; ++r)
    out.data_ptr<double>()[r] =
        sampling_uniform(static_cast<uint64_t>(sd[r]), static_cast<uint64_t>(st[r]));
  return out;
}

void apply_token_bitmask_(const at::Tensor& logits, const at::Tensor& token_bitmask) {
  RS_CHECK(logits.device().is_cpu() && logits.scalar_type() == at::kFloat &&
                        logits.dim() == 2 && logits.is_contiguous(),
                    "apply_token_bitmask_: logits must be a contiguous float32 CPU tensor "
                    "[bs, vocab], got ", logits.scalar_type(), " ", logits.sizes());
  const int64_t bs = logits.size(0), vocab = logits.size(1);
  check_bitmask(token_bitmask, "apply_token_bitmask_", bs, vocab);
  const at::Tensor bitmask = token_bitmask.contiguous();
  const int64_t words = (vocab + 31) / 32;
  const Ops ops = active_ops();
  float* lg = logits.data_ptr<float>();
  const int32_t* bm = bitmask.data_ptr<int32_t>();
  at::parallel_for(0, bs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int32_t* mask = bm + r * words;
      if (!bitmask_allows_all(mask, vocab))
        ops.row_apply_bitmask(lg + r * vocab, mask, lg + r * vocab, vocab);
    }
  });
}

std::string sampling_set_isa(const std::string& name) {
  const std::string want = name == "auto" ? isa_name(best_isa()) : name;
  RS_CHECK(want == "avx512" || want == "avx2" || want == "generic",
                    "sampling_set_isa: expected auto, avx512, avx2 or generic, got ", name);
  RS_CHECK(cpu_has(want), "sampling_set_isa: this CPU lacks ", want);
  g_isa = want;
  return g_isa;
}

std::vector<at::Tensor> sample(const at::Tensor& logits_in, const at::Tensor& temperatures,
                               const at::Tensor& top_ps, const at::Tensor& top_ks,
                               const at::Tensor& min_ps, const at::Tensor& seeds,
                               const at::Tensor& steps,
                               const std::optional<at::Tensor>& frequency_penalties,
                               const std::optional<at::Tensor>& presence_penalties,
                               const std::optional<at::Tensor>& repetition_penalties,
                               const std::optional<at::Tensor>& output_token_counts,
                               const std::optional<at::Tensor>& logit_bias, int64_t top_logprobs,
                               const std::optional<at::Tensor>& token_bitmask) {
  const SamplerInputs in("sample", logits_in, temperatures, top_ps, top_ks, min_ps, seeds, steps,
                         frequency_penalties, presence_penalties, repetition_penalties,
                         output_token_counts, logit_bias);
  const int64_t bs = in.bs, vocab = in.vocab;
  RS_CHECK(top_logprobs <= vocab, "sample: top_logprobs (", top_logprobs,
                    ") exceeds the vocabulary size ", vocab);
  if (token_bitmask) check_bitmask(*token_bitmask, "sample", bs, vocab);
  const at::Tensor bitmask = token_bitmask ? token_bitmask->contiguous() : at::Tensor();
  const int64_t words = (vocab + 31) / 32;
  std::vector<RowParams> params = in.params;
  const at::Tensor us = sampling_uniforms(seeds, steps);
  for (int64_t r = 0; r < bs; ++r) params[r].u = us.data_ptr<double>()[r];

  at::Tensor next = at::empty({bs}, at::kLong);
  const bool want_lp = top_logprobs >= 0;
  const int64_t n_top = std::max<int64_t>(top_logprobs, 0);
  at::Tensor lp = at::empty({want_lp ? bs : 0}, at::kFloat);
  at::Tensor top_vals = at::empty({want_lp ? bs : 0, n_top}, at::kFloat);
  at::Tensor top_ids = at::empty({want_lp ? bs : 0, n_top}, at::kLong);
  const Ops ops = active_ops();
  const float* lg = in.logits.data_ptr<float>();
  const int32_t* cnt = in.counts();
  const float* bi = in.bias();
  const int32_t* bm = bitmask.defined() ? bitmask.data_ptr<int32_t>() : nullptr;
  int64_t* out = next.data_ptr<int64_t>();

  // torch's own thread pool: a second OpenMP runtime beside torch's would oversubscribe the
  // cores (both pools spin-wait), so rows are spread with at::parallel_for.
  at::parallel_for(0, bs, 1, [&](int64_t begin, int64_t end) {
    thread_local Scratch s;
    s.reserve(vocab);
    for (int64_t r = begin; r < end; ++r) {
      const float* raw = lg + r * vocab;
      const int32_t* mask = bm ? bm + r * words : nullptr;
      if (mask != nullptr && bitmask_allows_all(mask, vocab)) mask = nullptr;
      const int64_t tok = sample_row(ops, raw, cnt ? cnt + r * vocab : nullptr,
                                     bi ? bi + r * vocab : nullptr, mask, vocab, params[r], s);
      out[r] = tok;
      if (want_lp)
        logprobs_row(ops, raw, vocab, tok, n_top, s, lp.data_ptr<float>() + r,
                     top_vals.data_ptr<float>() + r * n_top,
                     top_ids.data_ptr<int64_t>() + r * n_top);
    }
  });
  if (!want_lp) return {next};
  return {next, lp, top_vals, top_ids};
}

std::vector<at::Tensor> verify_drafts(const at::Tensor& logits_in, const at::Tensor& temperatures,
                                      const at::Tensor& top_ps, const at::Tensor& top_ks,
                                      const at::Tensor& min_ps, const at::Tensor& seeds,
                                      const at::Tensor& steps, const at::Tensor& draft_ids,
                                      const at::Tensor& num_drafts,
                                      const std::optional<at::Tensor>& frequency_penalties,
                                      const std::optional<at::Tensor>& presence_penalties,
                                      const std::optional<at::Tensor>& repetition_penalties,
                                      const std::optional<at::Tensor>& output_token_counts,
                                      const std::optional<at::Tensor>& logit_bias) {
  constexpr const char* op = "verify_drafts";
  const SamplerInputs in(op, logits_in, temperatures, top_ps, top_ks, min_ps, seeds, steps,
                         frequency_penalties, presence_penalties, repetition_penalties,
                         output_token_counts, logit_bias, /*params_per_request=*/true);
  const int64_t n = in.bs, vocab = in.vocab;
  check_vec(num_drafts, "num_drafts", at::kLong, n, op);
  const at::Tensor nd = num_drafts.contiguous();
  const int64_t* k = nd.data_ptr<int64_t>();
  std::vector<int64_t> first_row(n + 1, 0), first_draft(n + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    RS_CHECK(k[i] >= 0, op, ": num_drafts must be >= 0, got ", k[i], " in row ", i);
    first_row[i + 1] = first_row[i] + k[i] + 1;
    first_draft[i + 1] = first_draft[i] + k[i];
  }
  RS_CHECK(in.logits.size(0) == first_row[n], op, ": logits must have sum(1 + num_drafts) = ",
                    first_row[n], " rows, got ", in.logits.size(0));
  check_vec(draft_ids, "draft_ids", at::kLong, first_draft[n], op);
  const at::Tensor drafts = draft_ids.contiguous();
  const int64_t* d = drafts.data_ptr<int64_t>();
  for (int64_t j = 0; j < first_draft[n]; ++j)
    RS_CHECK(d[j] >= 0 && d[j] < vocab, op, ": draft_ids must be in [0, ", vocab,
                      "), got ", d[j]);
  const at::Tensor sd = seeds.contiguous(), st = steps.contiguous();
  at::Tensor accepted = at::empty({n}, at::kLong), next = at::empty({n}, at::kLong);
  const Ops ops = active_ops();
  const float* lg = in.logits.data_ptr<float>();
  const int32_t* cnt = in.counts();
  const float* bi = in.bias();
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    thread_local Scratch s;
    s.reserve(vocab);
    for (int64_t i = begin; i < end; ++i)
      accepted.data_ptr<int64_t>()[i] = verify_request(
          ops, lg + first_row[i] * vocab, vocab, cnt ? cnt + i * vocab : nullptr,
          bi ? bi + i * vocab : nullptr, d + first_draft[i], k[i], in.params[i],
          static_cast<uint64_t>(sd.data_ptr<int64_t>()[i]),
          static_cast<uint64_t>(st.data_ptr<int64_t>()[i]), s, next.data_ptr<int64_t>() + i);
  });
  return {accepted, next};
}

}  // namespace radixserve::cpu
