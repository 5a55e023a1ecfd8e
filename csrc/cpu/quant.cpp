// Quantized linear: GGUF block repacking, validation, ISA dispatch and the OpenMP split (torch
// side), plus the portable kernels. The vector kernels are in quant_simd.h (built by
// quant_avx2.cpp and quant_avx512.cpp).
#include "cpu/quant.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/kernel_checks.h"
#include "cpu/quant_kernels.h"

namespace radixserve::cpu {
namespace {

using quant::kQK;
using quant::kTileN;
using quant::QType;

constexpr uint64_t kMagic = 0x3130'544E'5153'52ull;  // "RSQNT01" little-endian
constexpr int64_t kHeaderBytes = 64;
// Up to this many activation rows take the decode kernel (weights dequantised in registers,
// read once); more rows take the prefill kernel (an fp32 tile per 32 output columns, reused by
// every row). Chosen with benchmarks/kernels/bench_linear.py (benchmarks/results/linear_quant.md).
constexpr int64_t kGemvMaxRows = 5;
// Activation rounding (quant_kernels.h): 1 = int16 per 32-block (default), 0 = fp32 as given.
// The first read takes RADIXSERVE_QUANT_ACTIVATIONS=fp32|int16; set_quant_activations() after.
std::atomic<int> g_int16_activations{-1};
bool int16_activations() {
  int v = g_int16_activations.load(std::memory_order_relaxed);
  if (v < 0) {
    const char* env = std::getenv("RADIXSERVE_QUANT_ACTIVATIONS");
    v = env != nullptr && std::string(env) == "fp32" ? 0 : 1;
    g_int16_activations.store(v, std::memory_order_relaxed);
  }
  return v == 1;
}
constexpr int64_t kGemvChunk = 16;  // output columns per decode work item
// A column range (quant_linear's out) runs whole work items only.
static_assert(kTileN == kColumnBlock && kColumnBlock % kGemvChunk == 0);
constexpr int64_t kRowChunk = 96;   // activation rows per prefill work item (as gemm.cpp)

struct Header {
  uint64_t magic;
  int64_t n, k, kb, row_bytes;
  int32_t qtype, reserved0;
  int64_t reserved[2];
};
static_assert(sizeof(Header) == kHeaderBytes, "header must be 64 bytes");

const char* qtype_name(QType t) {
  switch (t) {
    case quant::kQ4_0: return "q4_0";
    case quant::kQ4_1: return "q4_1";
    default: return "q8_0";
  }
}

Header read_header(const torch::Tensor& packed, const char* op) {
  RS_CHECK(packed.defined() && packed.device().is_cpu() &&
               packed.scalar_type() == torch::kUInt8 && packed.dim() == 1 &&
               packed.is_contiguous() && packed.numel() >= kHeaderBytes,
           op, ": packed must be the CPU tensor returned by pack_quant_weight");
  Header h;
  std::memcpy(&h, packed.data_ptr<uint8_t>(), sizeof(h));
  const bool known = h.qtype >= quant::kQ4_0 && h.qtype <= quant::kQ8_0;
  RS_CHECK(h.magic == kMagic && known && h.n > 0 && h.k > 0 && h.kb * kQK == h.k &&
               h.row_bytes == quant::row_bytes(static_cast<QType>(h.qtype), h.kb) &&
               packed.numel() == kHeaderBytes + h.n * h.row_bytes,
           op, ": packed is not a weight packed by pack_quant_weight");
  return h;
}

const uint8_t* rows_of(const torch::Tensor& packed) {
  return packed.data_ptr<uint8_t>() + kHeaderBytes;
}

void pick_kernels(quant::QuantGemvFn* gemv, quant::QuantGemmFn* gemm) {
  switch (active_isa()) {
    case Isa::kAvx512:
      *gemv = quant::quant_gemv_avx512;
      *gemm = quant::quant_gemm_avx512;
      return;
    case Isa::kAvx2:
      *gemv = quant::quant_gemv_avx2;
      *gemm = quant::quant_gemm_avx2;
      return;
    default:
      *gemv = quant::quant_gemv_generic;
      *gemm = quant::quant_gemm_generic;
  }
}

// One GGUF block (d, [m], qs) -> its place in the packed row (the scales move, qs do not).
void repack_block(QType t, const uint8_t* src, uint8_t* row, int64_t kb, int64_t b) {
  std::memcpy(row + 2 * b, src, 2);                                       // d
  if (t == quant::kQ4_1) std::memcpy(row + 2 * kb + 2 * b, src + 2, 2);  // m
  std::memcpy(row + quant::qs_offset(t, kb) + b * quant::qs_bytes(t), src + quant::scale_bytes(t),
              quant::qs_bytes(t));
}

// Calls fn(i) for every i in [0, n), split statically over the OpenMP threads when `split` and
// there are several threads and items. Otherwise no parallel region is entered at all: libgomp
// closes every region, even a team of one (an `if` clause that is false), with a futex wake-up
// syscall; two of them per decode call cost ~1 us (strace: 2 futex calls per quant_linear).
template <typename Fn>
void parallel_for(int64_t n, bool split, const Fn& fn) {
  if (split && n > 1 && omp_get_max_threads() > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) fn(i);
  } else {
    for (int64_t i = 0; i < n; ++i) fn(i);
  }
}

// Per-call activation buffers, reused by the calling thread (quant_linear runs them before its
// parallel region).
struct ActivationBuffers {
  std::vector<float> xsum, xscale, xdq;
  std::vector<int16_t> xq;
};

quant::QuantizeRowFn pick_quantize_row() {
  switch (active_isa()) {
    case Isa::kAvx512: return quant::quantize_row_avx512;
    case Isa::kAvx2: return quant::quantize_row_avx2;
    default: return quant::quantize_row_generic;
  }
}

// Fills p->xsum and, with int16 activations, either p->xq/xscale (integer decode kernels) or
// p->x = x' = sx * xq (fp32 prefill and portable kernels): the same rounded values either way.
void prepare_activations(quant::QuantProblem* p, ActivationBuffers* buf, bool int16,
                         bool integer_decode) {
  const int64_t m = p->M, kb = p->KB, k = p->K;
  p->ldxs = (kb + quant::kScaleVec - 1) / quant::kScaleVec * quant::kScaleVec;
  buf->xsum.assign(static_cast<size_t>(m * p->ldxs), 0.f);
  p->xsum = buf->xsum.data();
  if (!int16) {
    for (int64_t r = 0; r < m; ++r)
      for (int64_t b = 0; b < kb; ++b) {
        const float* xb = p->x + r * p->ldx + b * kQK;
        float s = 0.f;
        for (int i = 0; i < kQK; ++i) s += xb[i];
        buf->xsum[r * p->ldxs + b] = s;
      }
    return;
  }
  buf->xscale.assign(static_cast<size_t>(m * p->ldxs), 0.f);
  buf->xq.resize(static_cast<size_t>(m * k));
  if (!integer_decode) buf->xdq.resize(static_cast<size_t>(m * k));
  float* xsum = buf->xsum.data();
  float* xscale = buf->xscale.data();
  float* xdq = buf->xdq.data();
  int16_t* xq = buf->xq.data();
  const float* x = p->x;
  const int64_t ldx = p->ldx, ldxs = p->ldxs;
  const quant::QuantizeRowFn quantize_row = pick_quantize_row();
  parallel_for(m, m >= 64, [&](int64_t r) {
    quantize_row(x + r * ldx, kb, xq + r * k, xscale + r * ldxs, xsum + r * ldxs);
    if (!integer_decode)
      for (int64_t i = 0; i < k; ++i)
        xdq[r * k + i] = xscale[r * ldxs + i / kQK] * static_cast<float>(xq[r * k + i]);
  });
  if (integer_decode) {
    p->xq = xq;
    p->xscale = xscale;
  } else {
    p->x = xdq;
    p->ldx = k;
  }
}

}  // namespace

torch::Tensor pack_quant_weight(const torch::Tensor& raw, const std::string& qtype, int64_t k) {
  QType t;
  if (qtype == "q4_0") {
    t = quant::kQ4_0;
  } else if (qtype == "q4_1") {
    t = quant::kQ4_1;
  } else if (qtype == "q8_0") {
    t = quant::kQ8_0;
  } else {
    RS_CHECK(false, "pack_quant_weight: qtype must be q4_0, q4_1 or q8_0, got '", qtype, "'");
  }
  check_tensor(raw, "raw", 2);
  check_dtype(raw, "raw", torch::kUInt8);
  RS_CHECK(k > 0 && k % kQK == 0, "pack_quant_weight: K must be a positive multiple of 32, got ",
           k);
  const int64_t kb = k / kQK, n = raw.size(0);
  const int64_t gguf_block = quant::scale_bytes(t) + quant::qs_bytes(t);
  RS_CHECK(n > 0 && raw.size(1) == kb * gguf_block, "pack_quant_weight: raw must be [N, ",
           kb * gguf_block, "] bytes for K=", k, " in ", qtype, ", got ", raw.sizes());
  const int64_t rb = quant::row_bytes(t, kb);
  auto packed = torch::empty({kHeaderBytes + n * rb}, torch::kUInt8);
  const Header h{kMagic, n, k, kb, rb, static_cast<int32_t>(t), 0, {0, 0}};
  std::memset(packed.data_ptr<uint8_t>(), 0, kHeaderBytes);
  std::memcpy(packed.data_ptr<uint8_t>(), &h, sizeof(h));
  const uint8_t* src = raw.data_ptr<uint8_t>();
  uint8_t* dst = packed.data_ptr<uint8_t>() + kHeaderBytes;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r)
    for (int64_t b = 0; b < kb; ++b)
      repack_block(t, src + r * kb * gguf_block + b * gguf_block, dst + r * rb, kb, b);
  return packed;
}

SplitCall prepare_quant_linear(const torch::Tensor& x, const torch::Tensor& packed,
                               const std::optional<torch::Tensor>& bias,
                               const std::optional<torch::Tensor>& out_cols, int64_t col_begin,
                               int64_t col_end) {
  const Header h = read_header(packed, "quant_linear");
  check_tensor(x, "x", 2);
  check_float_dtype(x, "x");
  RS_CHECK(x.size(1) == h.k, "quant_linear: x has K=", x.size(1), " but the weight has K=", h.k);
  torch::Tensor bias_f;
  if (bias.has_value()) {
    check_tensor(*bias, "bias", 1);
    RS_CHECK(bias->size(0) == h.n, "quant_linear: bias must have shape [", h.n, "], got ",
             bias->sizes());
    RS_CHECK(bias->scalar_type() == torch::kFloat || bias->scalar_type() == x.scalar_type(),
             "quant_linear: bias must be float32 or x's dtype, got ", bias->scalar_type());
    bias_f = bias->to(torch::kFloat).contiguous();
  }
  const int64_t m = x.size(0);
  int64_t n0 = 0, n1 = h.n;  // the output columns computed
  torch::Tensor out;
  if (out_cols.has_value()) {
    // out holds the kernels' fp32 sums: bf16 x would round them afterwards (whole products).
    RS_CHECK(x.scalar_type() == torch::kFloat,
             "quant_linear: a column range (out) needs float32 x, got ", x.scalar_type());
    n0 = col_begin;
    n1 = check_column_range(*out_cols, m, h.n, torch::kFloat, col_begin, col_end,
                            "quant_linear");
    out = *out_cols;
  } else {
    RS_CHECK(col_begin == 0 && col_end < 0, "quant_linear: a column range needs out");
    out = torch::empty({m, h.n}, x.options().dtype(torch::kFloat));
  }
  const torch::Tensor xf = x.scalar_type() == torch::kFloat ? x : x.to(torch::kFloat);
  const auto x_dtype = x.scalar_type();
  SplitCall call;
  // A column range leaves the fp32 sums in the caller's out (x is float32 then).
  call.finish = [out, x_dtype] { return x_dtype == torch::kFloat ? out : out.to(x_dtype); };
  if (m == 0) return call;

  quant::QuantProblem p;
  p.x = xf.data_ptr<float>();
  p.ldx = h.k;
  p.w = rows_of(packed);
  p.type = static_cast<QType>(h.qtype);
  p.row_bytes = h.row_bytes;
  p.bias = bias_f.defined() ? bias_f.data_ptr<float>() : nullptr;
  p.out = out.data_ptr<float>();
  p.M = m;
  p.N = h.n;
  p.K = h.k;
  p.KB = h.kb;
  quant::QuantGemvFn gemv;
  quant::QuantGemmFn gemm;
  pick_kernels(&gemv, &gemm);
  const bool decode = m <= kGemvMaxRows;
  // The preparing thread's buffers: they hold the rounded activations until its next call.
  static thread_local ActivationBuffers buffers;
  const bool integer_decode = decode && gemv != quant::quant_gemv_generic;
  prepare_activations(&p, &buffers, int16_activations(), integer_decode);
  SplitPhase phase;
  phase.threads = omp_get_max_threads();
  if (decode) {
    // Each thread streams a contiguous run of weight rows once.
    const int64_t first = n0 / kGemvChunk;
    phase.items = (n1 + kGemvChunk - 1) / kGemvChunk - first;
    phase.run = [p, gemv, first, n1, xf, bias_f](int64_t begin, int64_t end) {
      for (int64_t it = first + begin; it < first + end; ++it)
        gemv(p, it * kGemvChunk, std::min(n1, (it + 1) * kGemvChunk));
    };
  } else {
    const int64_t first = n0 / kTileN, tiles = (n1 + kTileN - 1) / kTileN - first;
    const int64_t chunk = m <= 2 * kRowChunk ? m : kRowChunk;
    const int64_t chunks = (m + chunk - 1) / chunk;
    phase.items = tiles * chunks;
    phase.run = [p, gemm, first, tiles, chunk, m, xf, bias_f](int64_t begin, int64_t end) {
      for (int64_t it = begin; it < end; ++it) {
        const int64_t nt = first + it % tiles, m0 = (it / tiles) * chunk;
        gemm(p, nt * kTileN, m0, std::min(m, m0 + chunk));
      }
    };
  }
  call.phases.push_back(std::move(phase));
  return call;
}

torch::Tensor quant_linear(const torch::Tensor& x, const torch::Tensor& packed,
                           const std::optional<torch::Tensor>& bias,
                           const std::optional<torch::Tensor>& out, int64_t col_begin,
                           int64_t col_end) {
  return run_split_call(prepare_quant_linear(x, packed, bias, out, col_begin, col_end));
}

torch::Tensor quant_embedding(const torch::Tensor& ids, const torch::Tensor& packed) {
  const Header h = read_header(packed, "quant_embedding");
  check_tensor(ids, "ids", 1);
  check_dtype(ids, "ids", torch::kLong);
  const int64_t t = ids.size(0);
  const int64_t* id = ids.data_ptr<int64_t>();
  for (int64_t i = 0; i < t; ++i)
    RS_CHECK(id[i] >= 0 && id[i] < h.n, "quant_embedding: id ", id[i], " is out of range [0, ",
             h.n, ")");
  auto out = torch::empty({t, h.k}, torch::kFloat);
  const QType type = static_cast<QType>(h.qtype);
  const uint8_t* w = rows_of(packed);
  float* o = out.data_ptr<float>();
  for (int64_t i = 0; i < t; ++i)
    for (int64_t b = 0; b < h.kb; ++b)
      quant::detail::dequant_block(type, w + id[i] * h.row_bytes, h.kb, b, o + i * h.k + b * kQK);
  return out;
}

torch::Tensor dequantize_quant_weight(const torch::Tensor& packed) {
  const Header h = read_header(packed, "dequantize_quant_weight");
  auto out = torch::empty({h.n, h.k}, torch::kFloat);
  const QType type = static_cast<QType>(h.qtype);
  const uint8_t* w = rows_of(packed);
  float* o = out.data_ptr<float>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < h.n; ++r)
    for (int64_t b = 0; b < h.kb; ++b)
      quant::detail::dequant_block(type, w + r * h.row_bytes, h.kb, b, o + r * h.k + b * kQK);
  return out;
}

std::tuple<std::string, int64_t, int64_t> quant_weight_info(const torch::Tensor& packed) {
  const Header h = read_header(packed, "quant_weight_info");
  return {qtype_name(static_cast<QType>(h.qtype)), h.n, h.k};
}

void set_quant_activations(const std::string& mode) {
  RS_CHECK(mode == "int16" || mode == "fp32",
           "set_quant_activations: mode must be 'int16' or 'fp32', got '", mode, "'");
  g_int16_activations.store(mode == "int16" ? 1 : 0, std::memory_order_relaxed);
}

std::string quant_activations() { return int16_activations() ? "int16" : "fp32"; }

std::string quant_linear_isa() {
  quant::QuantGemvFn gemv;
  quant::QuantGemmFn gemm;
  pick_kernels(&gemv, &gemm);
  if (gemv == quant::quant_gemv_avx512) return "avx512";
  if (gemv == quant::quant_gemv_avx2) return "avx2";
  return "generic";
}

}  // namespace radixserve::cpu

namespace radixserve::quant {

namespace {

// out[m][n] for m in [m0, m1), n in [n0, n1): each weight row dequantised once (GGUF's
// arithmetic), then dotted with every activation row in order.
void rows_generic(const QuantProblem& p, int64_t n0, int64_t n1, int64_t m0, int64_t m1) {
  std::vector<float> w(static_cast<size_t>(p.K));
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = p.w + n * p.row_bytes;
    for (int64_t b = 0; b < p.KB; ++b) detail::dequant_block(p.type, row, p.KB, b, &w[b * kQK]);
    for (int64_t m = m0; m < m1; ++m) {
      const float* x = p.x + m * p.ldx;
      float acc = 0.f;
      for (int64_t k = 0; k < p.K; ++k) acc += w[k] * x[k];
      p.out[m * p.N + n] = acc + (p.bias ? p.bias[n] : 0.f);
    }
  }
}

}  // namespace

void quantize_row_generic(const float* x, int64_t kb, int16_t* xq, float* xscale, float* xsum) {
  for (int64_t b = 0; b < kb; ++b) {
    const float* xb = x + b * kQK;
    float amax = 0.f;
    for (int i = 0; i < kQK; ++i) amax = std::max(amax, std::abs(xb[i]));
    const float sx = amax / 32767.f;
    const float inv = amax > 0.f ? 32767.f / amax : 0.f;
    int sum = 0;
    for (int i = 0; i < kQK; ++i) {
      const float v = xb[i] * inv;  // |v| <= 32767 up to rounding; halves round away from 0
      const int qi = static_cast<int>(v + (v >= 0.f ? 0.5f : -0.5f));
      xq[b * kQK + i] = static_cast<int16_t>(std::min(32767, std::max(-32767, qi)));
      sum += xq[b * kQK + i];
    }
    xscale[b] = sx;
    xsum[b] = sx * static_cast<float>(sum);
  }
}

void quant_gemv_generic(const QuantProblem& p, int64_t n0, int64_t n1) {
  rows_generic(p, n0, n1, 0, p.M);
}

void quant_gemm_generic(const QuantProblem& p, int64_t n0, int64_t m0, int64_t m1) {
  rows_generic(p, n0, std::min(p.N, n0 + kTileN), m0, m1);
}

}  // namespace radixserve::quant
