// Int16 linear: validation, weight rounding and packing, ISA dispatch and the OpenMP split
// (torch side), plus the portable kernels. The vector kernels are in gemm_int16_avx2.cpp /
// gemm_int16_avx512.cpp.
#include "cpu/gemm_int16.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/gemm_int16_kernels.h"
#include "cpu/kernel_checks.h"

namespace radixserve::cpu {
namespace {

using gemm_i16::kBlockN;

constexpr uint64_t kMagic = 0x3136'4931'4E4C'52ull;  // "RLN1I16" little-endian
constexpr int64_t kHeaderBytes = 64;
// Rows per work item: a multiple of the AVX2 tile (6) and of the AVX-512 one (8 -> 96 = 12 x 8),
// small enough that a chunk's activations stay in L2 while the weight blocks pass by.
constexpr int64_t kRowChunk = 96;

struct Header {
  uint64_t magic;
  int64_t n, k, kp;
  int32_t weight_bits, act_bits;
  int64_t kblock;
  int32_t block_n, reserved0;
  int64_t reserved;
};
static_assert(sizeof(Header) == kHeaderBytes, "header must be 64 bytes");

int64_t blocks_of(int64_t n) { return (n + kBlockN - 1) / kBlockN; }
float qmax_of(int64_t bits) { return static_cast<float>((int64_t{1} << (bits - 1)) - 1); }
int64_t scale_bytes(int64_t n) { return blocks_of(n) * kBlockN * 4; }
int64_t packed_bytes(int64_t n, int64_t kp) {
  return kHeaderBytes + scale_bytes(n) + blocks_of(n) * kp * kBlockN * 2;
}

Header read_header(const torch::Tensor& packed) {
  RS_CHECK(packed.device().is_cpu() && packed.scalar_type() == torch::kUInt8 && packed.dim() == 1 &&
               packed.is_contiguous() && packed.numel() >= kHeaderBytes,
           "int16_linear: packed must be the CPU tensor returned by pack_int16_weight");
  Header h;
  std::memcpy(&h, packed.data_ptr<uint8_t>(), sizeof(h));
  RS_CHECK(h.magic == kMagic && h.block_n == kBlockN && h.n > 0 && h.k > 0 &&
               packed.numel() == packed_bytes(h.n, h.kp),
           "int16_linear: packed is not a weight packed by pack_int16_weight");
  return h;
}

const float* scales_of(const torch::Tensor& packed) {
  return reinterpret_cast<const float*>(packed.data_ptr<uint8_t>() + kHeaderBytes);
}

const int16_t* blocks_ptr(const torch::Tensor& packed, const Header& h) {
  return reinterpret_cast<const int16_t*>(packed.data_ptr<uint8_t>() + kHeaderBytes +
                                          scale_bytes(h.n));
}

gemm_i16::Int16BlockFn pick_kernel() {
  switch (active_isa()) {
    case Isa::kAvx512:
      return detected_features().avx512_vnni ? gemm_i16::int16_block_avx512vnni
                                             : gemm_i16::int16_block_avx512;
    case Isa::kAvx2:
      return gemm_i16::int16_block_avx2;
    default:
      return gemm_i16::int16_block_generic;
  }
}

gemm_i16::QuantizeRowFn pick_quantize() {
  switch (active_isa()) {
    case Isa::kAvx512:
      return gemm_i16::quantize_row_avx512;
    case Isa::kAvx2:
      return gemm_i16::quantize_row_avx2;
    default:
      return gemm_i16::quantize_row_generic;
  }
}

}  // namespace

torch::Tensor pack_int16_weight(const torch::Tensor& weight, int64_t weight_bits,
                                int64_t act_bits) {
  RS_CHECK(weight.device().is_cpu(), "pack_int16_weight: weight must be on the CPU");
  RS_CHECK(weight.dim() == 2, "pack_int16_weight: weight must be 2-D [N, K], got ", weight.dim(),
           "-D");
  RS_CHECK(weight.scalar_type() == torch::kFloat32,
           "pack_int16_weight: weight must be float32, got ", weight.scalar_type());
  RS_CHECK(weight_bits >= 2 && weight_bits <= 15 && act_bits >= 2 && act_bits <= 15,
           "pack_int16_weight: weight_bits and act_bits must be in 2..15, got ", weight_bits,
           " and ", act_bits);
  // The largest |product| is Qw * Qx; an int32 sum of kblock of them must not overflow.
  const int64_t prod = static_cast<int64_t>(qmax_of(weight_bits)) *
                       static_cast<int64_t>(qmax_of(act_bits));
  const int64_t fit = std::numeric_limits<int32_t>::max() / prod / 2 * 2;
  RS_CHECK(fit >= 2, "pack_int16_weight: ", weight_bits, " + ", act_bits,
           " bits leave no room for an int32 sum of two products");
  const int64_t n = weight.size(0), k = weight.size(1);
  RS_CHECK(n > 0 && k > 0, "pack_int16_weight: weight must be non-empty");
  const int64_t kp = (k + 1) / 2 * 2;
  auto packed = torch::zeros({packed_bytes(n, kp)}, torch::kUInt8);
  const Header h{kMagic, n, k, kp, static_cast<int32_t>(weight_bits), static_cast<int32_t>(act_bits),
                 std::min(fit, kp), static_cast<int32_t>(kBlockN), 0, 0};
  std::memcpy(packed.data_ptr<uint8_t>(), &h, sizeof(h));
  const torch::Tensor w = weight.contiguous();
  const float* src = w.data_ptr<float>();
  float* scales = const_cast<float*>(scales_of(packed));
  int16_t* dst = const_cast<int16_t*>(blocks_ptr(packed, h));
  const float qmax = qmax_of(weight_bits);
  // One rounding rule for weights and activations: quantize_row_generic, per output channel.
#pragma omp parallel
  {
    std::vector<int16_t> row(kp);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < n; ++c) {
      scales[c] = gemm_i16::quantize_row_generic(src + c * k, k, kp, qmax, row.data());
      int16_t* blk = dst + (c / kBlockN) * kp * kBlockN;
      const int64_t col = c % kBlockN;
      for (int64_t kk = 0; kk < kp; ++kk) blk[((kk / 2) * kBlockN + col) * 2 + (kk & 1)] = row[kk];
    }
  }
  return packed;
}

SplitCall prepare_int16_linear(const torch::Tensor& x, const torch::Tensor& packed,
                               const std::optional<torch::Tensor>& bias) {
  const Header h = read_header(packed);
  RS_CHECK(x.device().is_cpu(), "int16_linear: x must be on the CPU");
  RS_CHECK(x.dim() == 2, "int16_linear: x must be 2-D [M, K], got ", x.dim(), "-D");
  RS_CHECK(x.is_contiguous(), "int16_linear: x must be contiguous");
  RS_CHECK(x.scalar_type() == torch::kFloat32, "int16_linear: x must be float32, got ",
           x.scalar_type());
  RS_CHECK(x.size(1) == h.k, "int16_linear: x has K=", x.size(1), " but the weight has K=", h.k);
  torch::Tensor bias_f;
  if (bias.has_value()) {
    const torch::Tensor& b = *bias;
    RS_CHECK(b.device().is_cpu() && b.dim() == 1 && b.size(0) == h.n,
             "int16_linear: bias must be a CPU tensor of shape [", h.n, "], got ", b.sizes());
    RS_CHECK(b.scalar_type() == torch::kFloat32, "int16_linear: bias must be float32, got ",
             b.scalar_type());
    bias_f = b.contiguous();
  }
  const int64_t m = x.size(0);
  auto out = torch::empty({m, h.n}, x.options());
  SplitCall call;
  call.finish = [out] { return out; };
  if (m == 0) return call;

  auto xq = torch::empty({m, h.kp}, x.options().dtype(torch::kInt16));
  auto xscale = torch::empty({m}, x.options());
  gemm_i16::Int16Problem p;
  p.xq = xq.data_ptr<int16_t>();
  p.xscale = xscale.data_ptr<float>();
  p.ldx = h.kp;
  p.w = blocks_ptr(packed, h);
  p.wscale = scales_of(packed);
  p.bias = bias_f.defined() ? bias_f.data_ptr<float>() : nullptr;
  p.out = out.data_ptr<float>();
  p.M = m;
  p.N = h.n;
  p.Kp = h.kp;
  p.kblock = h.kblock;

  const gemm_i16::Int16BlockFn kernel = pick_kernel();
  const gemm_i16::QuantizeRowFn quantize = pick_quantize();
  const float qmax = qmax_of(h.act_bits);
  const int64_t k = h.k, kp = h.kp;
  const auto round_rows = [quantize, qmax, k, kp, x, xq, xscale](int64_t r0, int64_t r1) {
    const float* xs = x.data_ptr<float>();
    int16_t* xqp = xq.data_ptr<int16_t>();
    float* xsp = xscale.data_ptr<float>();
    for (int64_t r = r0; r < r1; ++r) xsp[r] = quantize(xs + r * k, k, kp, qmax, xqp + r * kp);
  };
  // A short input's rows are rounded here (microseconds: a phase would cost a barrier).
  if (m <= kInt16RoundedInPrepare) {
    round_rows(0, m);
  } else {
    SplitPhase rounding;
    rounding.items = m;
    rounding.threads = omp_get_max_threads();
    rounding.run = round_rows;
    call.phases.push_back(std::move(rounding));
  }
  SplitPhase products = row_chunk_block_phase(
      m, kRowChunk, 0, blocks_of(h.n), omp_get_max_threads(),
      [p, kernel, packed, bias_f, xq, xscale](int64_t nb, int64_t m0, int64_t m1) {
        kernel(p, nb, m0, m1);
      });
  call.phases.push_back(std::move(products));
  return call;
}

torch::Tensor int16_linear(const torch::Tensor& x, const torch::Tensor& packed,
                           const std::optional<torch::Tensor>& bias) {
  return run_split_call(prepare_int16_linear(x, packed, bias));
}

std::tuple<torch::Tensor, torch::Tensor, int64_t, int64_t> int16_weight(
    const torch::Tensor& packed) {
  const Header h = read_header(packed);
  auto w = torch::empty({h.n, h.k}, torch::kInt16);
  const int16_t* blk = blocks_ptr(packed, h);
  int16_t* dst = w.data_ptr<int16_t>();
  for (int64_t c = 0; c < h.n; ++c) {
    const int16_t* b = blk + (c / kBlockN) * h.kp * kBlockN;
    for (int64_t kk = 0; kk < h.k; ++kk)
      dst[c * h.k + kk] = b[((kk / 2) * kBlockN + c % kBlockN) * 2 + (kk & 1)];
  }
  auto scales = torch::from_blob(const_cast<float*>(scales_of(packed)), {h.n}, torch::kFloat32)
                    .clone();
  return {w, scales, h.act_bits, h.kblock};
}

std::string int16_linear_isa() {
  const gemm_i16::Int16BlockFn k = pick_kernel();
  if (k == gemm_i16::int16_block_avx512vnni) return "avx512vnni";
  if (k == gemm_i16::int16_block_avx512) return "avx512";
  if (k == gemm_i16::int16_block_avx2) return "avx2";
  return "generic";
}

}  // namespace radixserve::cpu

namespace radixserve::gemm_i16 {

float quantize_row_generic(const float* x, int64_t k, int64_t kp, float qmax, int16_t* xq) {
  float a = 0.f;
  for (int64_t i = 0; i < k; ++i) a = std::fabs(x[i]) > a ? std::fabs(x[i]) : a;
  float inv;
  const float scale = detail::row_scale(a, qmax, &inv);
  detail::round_tail(x, 0, k, kp, inv, qmax, xq);
  return scale;
}

// Portable kernel: int32 sums per K block, groups of up to kSmallRows rows K chunk by K chunk
// (each chunk of the 32-channel block serves the whole group while it is in cache, the vector
// builds' small-M order), one row at a time within a group.
void int16_block_generic(const Int16Problem& p, int64_t nb, int64_t m0, int64_t m1) {
  float acc[kSmallRows * kBlockN];
  int32_t sums[kBlockN];
  const int16_t* blk = p.w + nb * p.Kp * kBlockN;
  for (int64_t g0 = m0; g0 < m1; g0 += kSmallRows) {
    const int64_t g1 = std::min(m1, g0 + kSmallRows);
    std::fill(acc, acc + (g1 - g0) * kBlockN, 0.f);
    for (int64_t k0 = 0; k0 < p.Kp; k0 += p.kblock) {
      const int64_t k1 = std::min(p.Kp, k0 + p.kblock);
      for (int64_t m = g0; m < g1; ++m) {
        const int16_t* x = p.xq + m * p.ldx;
        std::fill(sums, sums + kBlockN, 0);
        for (int64_t k = k0; k < k1; k += 2) {
          const int16_t* wk = blk + k * kBlockN;
          const int32_t x0 = x[k], x1 = x[k + 1];
          for (int64_t c = 0; c < kBlockN; ++c) sums[c] += wk[2 * c] * x0 + wk[2 * c + 1] * x1;
        }
        float* a = acc + (m - g0) * kBlockN;
        for (int64_t c = 0; c < kBlockN; ++c) a[c] += static_cast<float>(sums[c]);
      }
    }
    detail::store_tile(p, acc, g1 - g0, nb, g0);
  }
}

}  // namespace radixserve::gemm_i16
