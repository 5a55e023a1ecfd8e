// Linear layers on GGUF-quantized weights (Q4_0, Q4_1, Q8_0) kept quantized: the GGUF blocks are
// repacked once at load (layout: quant_kernels.h) and multiplied by kernels that dequantise in
// registers (decode) or one fp32 tile at a time (prefill). Activations are rounded to int16 per
// 32-block by default (set_quant_activations); sums are fp32.
#pragma once

#include <torch/extension.h>

#include <optional>
#include <string>

#include "cpu/split_call.h"

namespace radixserve::cpu {

// raw: uint8 [N, K/32 * block_bytes], the GGUF tensor data of an [N, K] weight, row by row;
// qtype "q4_0" | "q4_1" | "q8_0" -> packed 1-D uint8 tensor (64-byte header, then the rows).
torch::Tensor pack_quant_weight(const torch::Tensor& raw, const std::string& qtype, int64_t k);

// x [M, K] float32 or bfloat16, bias [N] (float32 or x's dtype) or None -> [M, N] in x's dtype.
// With `out` (float32 [M, N]; x float32): only output columns [col_begin, col_end) (col_end < 0:
// N) are computed, into out, which is returned; the ends must be multiples of 32 (or N), and
// those columns get the bits of the whole product (kernel_checks.h: check_column_range).
torch::Tensor quant_linear(const torch::Tensor& x, const torch::Tensor& packed,
                           const std::optional<torch::Tensor>& bias,
                           const std::optional<torch::Tensor>& out = std::nullopt,
                           int64_t col_begin = 0, int64_t col_end = -1);
// quant_linear as a prepared call (split_call.h; activations rounded on this thread): what
// quant_linear runs, and what the fused decode step runs inside its own OpenMP region.
SplitCall prepare_quant_linear(const torch::Tensor& x, const torch::Tensor& packed,
                               const std::optional<torch::Tensor>& bias,
                               const std::optional<torch::Tensor>& out = std::nullopt,
                               int64_t col_begin = 0, int64_t col_end = -1);

// Rows `ids` (int64 [T]) of the packed weight, dequantised -> float32 [T, K] (embedding lookup).
torch::Tensor quant_embedding(const torch::Tensor& ids, const torch::Tensor& packed);

// The whole packed weight as float32 [N, K] (the values GGUF's dequantize gives).
torch::Tensor dequantize_quant_weight(const torch::Tensor& packed);

// (qtype, N, K) of a packed weight.
std::tuple<std::string, int64_t, int64_t> quant_weight_info(const torch::Tensor& packed);

// How quant_linear rounds activations (quant_kernels.h): "int16" per 32-block (the default) or
// "fp32" (as given). Process-wide.
void set_quant_activations(const std::string& mode);
std::string quant_activations();

// The kernel build quant_linear() uses now: "avx512", "avx2" or "generic".
std::string quant_linear_isa();

}  // namespace radixserve::cpu
