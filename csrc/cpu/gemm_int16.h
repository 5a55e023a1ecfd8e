// Linear layer in int16 integers for prefill-shaped (many-row) products on CPUs without a fast
// 16-bit float multiply-add: weights rounded once at load per output channel, activations per
// row on every call, products summed exactly in int32 (numbers: gemm_int16_kernels.h). On AVX2
// vpmaddwd does 16 multiply-adds per instruction against 8 for an fp32 FMA.
#pragma once

#include <torch/extension.h>

#include <optional>
#include <string>
#include <tuple>

#include "cpu/split_call.h"

namespace radixserve::cpu {

// weight [N, K] float32 -> packed 1-D uint8 tensor: a 64-byte header (magic, N, K, bits, K
// block), the per-channel scales, then the int16 blocks. weight_bits / act_bits (2..15) are the
// signed integer widths of the weights and of the activations rounded by int16_linear; their
// product must leave room for at least 2 products in an int32 (e.g. 12 + 12 bits: K blocks of
// 512, 11 + 11 bits: 2052). Opaque to Python; only int16_linear and int16_weight read it.
torch::Tensor pack_int16_weight(const torch::Tensor& weight, int64_t weight_bits,
                                int64_t act_bits);

// x [M, K] float32, bias [N] float32 or None -> [M, N] float32.
torch::Tensor int16_linear(const torch::Tensor& x, const torch::Tensor& packed,
                           const std::optional<torch::Tensor>& bias);
// int16_linear as a prepared call (split_call.h): the rows of inputs of at most
// kInt16RoundedInPrepare rows are rounded on this thread, so x must be ready; longer inputs'
// rows are rounded in a first phase, so earlier phases chained before it may still write x.
// Then row chunks x weight blocks.
constexpr int64_t kInt16RoundedInPrepare = 64;
SplitCall prepare_int16_linear(const torch::Tensor& x, const torch::Tensor& packed,
                               const std::optional<torch::Tensor>& bias);

// The rounded weight of a packed tensor: (int16 [N, K], float32 scales [N], act_bits, K block).
std::tuple<torch::Tensor, torch::Tensor, int64_t, int64_t> int16_weight(
    const torch::Tensor& packed);

// The kernel build int16_linear() uses now: "avx512vnni", "avx512", "avx2" or "generic".
std::string int16_linear_isa();

}  // namespace radixserve::cpu
