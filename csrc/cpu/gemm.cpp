// Linear: validation, weight packing, ISA dispatch and OpenMP split (torch side), plus the
// portable kernel. The vector kernels are in gemm_avx2.cpp / gemm_avx512.cpp.
#include "cpu/gemm.h"

#include <omp.h>

#include <stdexcept>

#include "cpu/cpu_features.h"
#include "cpu/gemm_kernels.h"
#include "cpu/kernel_checks.h"

namespace radixserve::cpu {
namespace {

using gemm::kBlockN;
static_assert(kBlockN == kColumnBlock, "a column range (linear's out) runs whole blocks");

constexpr uint64_t kMagic = 0x3130'4E49'4C53'52ull;  // "RSLIN01" little-endian
constexpr int64_t kHeaderBytes = 64;
// Prefill rows are split into chunks of this many so that few-block (small N) products still
// give every thread work; decode batches stay whole so each weight block is streamed once.
constexpr int64_t kRowChunk = 96;

// Bad input raises ValueError in Python (pybind11 maps std::invalid_argument to it).
template <typename... Args>
void check(bool ok, const Args&... msg) {
  if (!ok) throw std::invalid_argument(error_message(msg...));
}

struct Header {
  uint64_t magic;
  int64_t n, k, kp;
  int32_t is_bf16, block_n;
  int64_t reserved[3];
};
static_assert(sizeof(Header) == kHeaderBytes, "header must be 64 bytes");

int64_t data_bytes(int64_t n, int64_t kp, bool bf16) {
  const int64_t blocks = (n + kBlockN - 1) / kBlockN;
  return blocks * kp * kBlockN * (bf16 ? 2 : 4);
}

Header read_header(const torch::Tensor& packed) {
  check(packed.device().is_cpu() && packed.scalar_type() == torch::kUInt8 &&
                        packed.dim() == 1 && packed.is_contiguous() &&
                        packed.numel() >= kHeaderBytes,
                    "linear: packed must be the CPU tensor returned by pack_linear_weight");
  Header h;
  std::memcpy(&h, packed.data_ptr<uint8_t>(), sizeof(h));
  check(h.magic == kMagic && h.block_n == kBlockN && h.n > 0 && h.k > 0 &&
                        packed.numel() == kHeaderBytes + data_bytes(h.n, h.kp, h.is_bf16),
                    "linear: packed is not a weight packed by pack_linear_weight");
  return h;
}

gemm::GemmBlockFn pick_kernel(bool bf16, bool* wants_bf16_x) {
  *wants_bf16_x = false;
  switch (active_isa()) {
    case Isa::kAvx512:
      if (bf16 && detected_features().avx512_bf16) {
        *wants_bf16_x = true;
        return gemm::gemm_block_avx512bf16;
      }
      return gemm::gemm_block_avx512;
    case Isa::kAvx2:
      return gemm::gemm_block_avx2;
    default:
      return gemm::gemm_block_generic;
  }
}

}  // namespace

torch::Tensor pack_linear_weight(const torch::Tensor& weight) {
  check(weight.device().is_cpu(), "pack_linear_weight: weight must be on the CPU");
  check(weight.dim() == 2, "pack_linear_weight: weight must be 2-D [N, K], got ",
                    weight.dim(), "-D");
  const bool bf16 = weight.scalar_type() == torch::kBFloat16;
  check(bf16 || weight.scalar_type() == torch::kFloat32,
                    "pack_linear_weight: weight must be float32 or bfloat16, got ",
                    weight.scalar_type());
  const int64_t n = weight.size(0), k = weight.size(1);
  check(n > 0 && k > 0, "pack_linear_weight: weight must be non-empty");
  const int64_t kp = bf16 ? (k + 1) / 2 * 2 : k;
  auto packed = torch::zeros({kHeaderBytes + data_bytes(n, kp, bf16)}, torch::kUInt8);
  const Header h{kMagic, n, k, kp, bf16 ? 1 : 0, static_cast<int32_t>(kBlockN), {0, 0, 0}};
  std::memcpy(packed.data_ptr<uint8_t>(), &h, sizeof(h));
  const torch::Tensor w = weight.contiguous();
  const int64_t blocks = (n + kBlockN - 1) / kBlockN;
  uint8_t* dst = packed.data_ptr<uint8_t>() + kHeaderBytes;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t rows = std::min(kBlockN, n - b * kBlockN);
    if (bf16) {
      const auto* src = reinterpret_cast<const uint16_t*>(w.data_ptr<at::BFloat16>());
      uint16_t* blk = reinterpret_cast<uint16_t*>(dst) + b * kp * kBlockN;
      for (int64_t c = 0; c < rows; ++c) {
        const uint16_t* row = src + (b * kBlockN + c) * k;
        for (int64_t kk = 0; kk < k; ++kk) blk[((kk / 2) * kBlockN + c) * 2 + (kk & 1)] = row[kk];
      }
    } else {
      const float* src = w.data_ptr<float>();
      float* blk = reinterpret_cast<float*>(dst) + b * kp * kBlockN;
      for (int64_t c = 0; c < rows; ++c) {
        const float* row = src + (b * kBlockN + c) * k;
        for (int64_t kk = 0; kk < k; ++kk) blk[kk * kBlockN + c] = row[kk];
      }
    }
  }
  return packed;
}

SplitCall prepare_linear(const torch::Tensor& x, const torch::Tensor& packed,
                         const std::optional<torch::Tensor>& bias,
                         const std::optional<torch::Tensor>& out_cols, int64_t col_begin,
                         int64_t col_end) {
  const Header h = read_header(packed);
  check(x.device().is_cpu(), "linear: x must be on the CPU");
  check(x.dim() == 2, "linear: x must be 2-D [M, K], got ", x.dim(), "-D");
  check(x.is_contiguous(), "linear: x must be contiguous");
  const auto wdtype = h.is_bf16 ? torch::kBFloat16 : torch::kFloat32;
  check(x.scalar_type() == wdtype, "linear: x dtype ", x.scalar_type(),
                    " does not match the packed weight dtype ", c10::toString(wdtype));
  check(x.size(1) == h.k, "linear: x has K=", x.size(1), " but the weight has K=",
                    h.k);
  torch::Tensor bias_f;
  if (bias.has_value()) {
    const torch::Tensor& b = *bias;
    check(b.device().is_cpu(), "linear: bias must be on the CPU");
    check(b.dim() == 1 && b.size(0) == h.n, "linear: bias must have shape [", h.n,
                      "], got ", b.sizes());
    check(b.scalar_type() == wdtype || b.scalar_type() == torch::kFloat32,
                      "linear: bias must be float32 or x's dtype, got ", b.scalar_type());
    bias_f = b.to(torch::kFloat32).contiguous();
  }
  const int64_t m = x.size(0);
  int64_t n0 = 0, n1 = h.n;  // the output columns computed
  torch::Tensor out;
  if (out_cols.has_value()) {
    n0 = col_begin;
    n1 = check_column_range(*out_cols, m, h.n, x.scalar_type(), col_begin, col_end, "linear");
    out = *out_cols;
  } else {
    check(col_begin == 0 && col_end < 0, "linear: a column range needs out");
    out = torch::empty({m, h.n}, x.options());
  }
  SplitCall call;
  call.finish = [out] { return out; };
  if (m == 0) return call;

  bool wants_bf16_x = false;
  const gemm::GemmBlockFn kernel = pick_kernel(h.is_bf16, &wants_bf16_x);
  gemm::GemmProblem p;
  p.w = packed.data_ptr<uint8_t>() + kHeaderBytes;
  p.w_bf16 = h.is_bf16;
  p.bias = bias_f.defined() ? bias_f.data_ptr<float>() : nullptr;
  p.out = out.data_ptr();
  p.out_bf16 = h.is_bf16;
  p.M = m;
  p.N = h.n;
  p.K = h.k;
  p.Kp = h.kp;
  p.ldx = h.kp;
  // Kernels read x with a row stride of Kp and whole K pairs: pad (and, for the fp32-math
  // paths, convert bf16 to fp32) when the input does not already have that form.
  torch::Tensor xs;
  if (wants_bf16_x) {
    xs = h.kp == h.k ? x : torch::constant_pad_nd(x, {0, h.kp - h.k});
    p.xb = reinterpret_cast<const uint16_t*>(xs.data_ptr<at::BFloat16>());
  } else if (x.scalar_type() == torch::kFloat32) {
    xs = x;  // fp32 weights are not K-paired: Kp == K
    p.xf = xs.data_ptr<float>();
  } else {
    // bf16 -> fp32 with a zero K pad, in one pass (decode calls are short: no torch ops here).
    xs = torch::empty({m, h.kp}, x.options().dtype(torch::kFloat32));
    const auto* src = reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>());
    float* dst = xs.data_ptr<float>();
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t kk = 0; kk < h.k; ++kk)
        dst[r * h.kp + kk] = gemm::detail::bf16_to_f32(src[r * h.k + kk]);
      if (h.kp > h.k) dst[r * h.kp + h.k] = 0.f;
    }
    p.xf = dst;
  }

  const int64_t first = n0 / kBlockN, blocks = (n1 + kBlockN - 1) / kBlockN - first;
  SplitPhase phase = row_chunk_block_phase(
      m, kRowChunk, first, blocks, omp_get_max_threads(),
      [p, kernel, xs, bias_f, out](int64_t nb, int64_t m0, int64_t m1) {
        kernel(p, nb, m0, m1);
      });
  call.phases.push_back(std::move(phase));
  return call;
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& packed,
                     const std::optional<torch::Tensor>& bias,
                     const std::optional<torch::Tensor>& out, int64_t col_begin,
                     int64_t col_end) {
  return run_split_call(prepare_linear(x, packed, bias, out, col_begin, col_end));
}

std::string linear_isa() {
  bool wants_bf16_x = false;
  const gemm::GemmBlockFn k = pick_kernel(true, &wants_bf16_x);
  if (k == gemm::gemm_block_avx512bf16) return "avx512bf16";
  if (k == gemm::gemm_block_avx512) return "avx512";
  if (k == gemm::gemm_block_avx2) return "avx2";
  return "generic";
}

}  // namespace radixserve::cpu

namespace radixserve::gemm {

// Portable kernel: one row at a time against a 32-column block (the block stays in L1/L2
// across the rows), plain loops the compiler vectorises for the baseline ISA.
void gemm_block_generic(const GemmProblem& p, int64_t nb, int64_t m0, int64_t m1) {
  constexpr int64_t kRows = 4;  // rows per store_tile call
  float acc[kRows * kBlockN];
  const int64_t esize = p.w_bf16 ? 2 : 4;
  const char* blk = static_cast<const char*>(p.w) + nb * p.Kp * kBlockN * esize;
  for (int64_t m = m0; m < m1; m += kRows) {
    const int64_t rows = std::min(kRows, m1 - m);
    std::fill(acc, acc + kRows * kBlockN, 0.f);
    for (int64_t r = 0; r < rows; ++r) {
      const float* x = p.xf + (m + r) * p.ldx;
      float* a = acc + r * kBlockN;
      if (p.w_bf16) {
        const auto* w = reinterpret_cast<const uint16_t*>(blk);
        for (int64_t q = 0; q < p.Kp / 2; ++q) {
          const float x0 = x[2 * q], x1 = x[2 * q + 1];
          const uint16_t* wq = w + q * 2 * kBlockN;
          for (int64_t c = 0; c < kBlockN; ++c)
            a[c] += detail::bf16_to_f32(wq[2 * c]) * x0 + detail::bf16_to_f32(wq[2 * c + 1]) * x1;
        }
      } else {
        const auto* w = reinterpret_cast<const float*>(blk);
        for (int64_t k = 0; k < p.K; ++k) {
          const float xk = x[k];
          for (int64_t c = 0; c < kBlockN; ++c) a[c] += w[k * kBlockN + c] * xk;
        }
      }
    }
    detail::store_tile(p, acc, rows, nb, m);
  }
}

}  // namespace radixserve::gemm
