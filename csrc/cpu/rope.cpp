// torch-facing rotary embedding: checks, token-parallel loop, portable row kernels (both styles;
// the GPT-J pair style always runs here since its interleaved layout gains little from vectors).
#include "cpu/rope.h"

#include <ATen/Parallel.h>

#include "cpu/bf16.h"
#include "cpu/cpu_features.h"
#include "cpu/kernel_checks.h"

namespace radixserve::cpu {
namespace {

template <typename T>
void neox_row(T* x, int64_t heads, int64_t head_size, const float* cos, const float* sin,
              int64_t half) {
  for (int64_t h = 0; h < heads; ++h) {
    T* x1 = x + h * head_size;
    T* x2 = x1 + half;
    for (int64_t i = 0; i < half; ++i) {
      const float a = to_f32(x1[i]), b = to_f32(x2[i]);
      store_f32(x1 + i, a * cos[i] - b * sin[i]);
      store_f32(x2 + i, b * cos[i] + a * sin[i]);
    }
  }
}

template <typename T>
void pair_row(T* x, int64_t heads, int64_t head_size, const float* cos, const float* sin,
              int64_t half) {
  for (int64_t h = 0; h < heads; ++h) {
    T* p = x + h * head_size;
    for (int64_t i = 0; i < half; ++i) {
      const float a = to_f32(p[2 * i]), b = to_f32(p[2 * i + 1]);
      store_f32(p + 2 * i, a * cos[i] - b * sin[i]);
      store_f32(p + 2 * i + 1, b * cos[i] + a * sin[i]);
    }
  }
}

RopeKernels kernels(bool is_neox) {
  if (!is_neox) return {&pair_row<float>, &pair_row<uint16_t>};
  switch (active_isa()) {
    case Isa::kAvx512:
      return rope_kernels_avx512();
    case Isa::kAvx2:
      return rope_kernels_avx2();
    default:
      return {&neox_row<float>, &neox_row<uint16_t>};
  }
}

// q or k: [T, H * head_size] (rows may be strided, e.g. a slice of a fused qkv output) or
// [T, H, head_size]; the elements of a token must be contiguous. Returns H.
int64_t check_qk(const at::Tensor& t, const char* name, int64_t tokens, int64_t head_size) {
  RS_CHECK(t.defined(), name, " must be a tensor");
  RS_CHECK(t.device().is_cpu(), name, " must be on the CPU, got ", t.device());
  check_float_dtype(t, name);
  RS_CHECK(t.dim() == 2 || t.dim() == 3, name, " must be [T, H*head_size] or [T, H, head_size], got ",
           t.sizes());
  check_size(t, name, 0, tokens);
  const int64_t per_token = t.dim() == 2 ? t.size(1) : t.size(1) * t.size(2);
  RS_CHECK(per_token % head_size == 0, name, ": ", per_token,
           " values per token are not a whole number of heads of size ", head_size);
  if (t.dim() == 3) check_size(t, name, 2, head_size);
  const bool dense = t.stride(-1) == 1 && (t.dim() == 2 || t.stride(1) == head_size);
  RS_CHECK(dense || per_token == 0, name, ": each token's values must be contiguous");
  return per_token / head_size;
}

}  // namespace

void rotary_embedding(const at::Tensor& positions, const at::Tensor& query, const at::Tensor& key,
                      int64_t head_size, const at::Tensor& cos_sin_cache, bool is_neox) {
  check_tensor(positions, "positions", 1);
  check_dtype(positions, "positions", at::kLong);
  check_tensor(cos_sin_cache, "cos_sin_cache", 2);
  check_dtype(cos_sin_cache, "cos_sin_cache", at::kFloat);
  RS_CHECK(head_size > 0, "head_size must be positive, got ", head_size);
  const int64_t rot_dim = cos_sin_cache.size(1);
  RS_CHECK(rot_dim > 0 && rot_dim % 2 == 0 && rot_dim <= head_size,
           "cos_sin_cache.size(1) (rot_dim) must be even and in [2, head_size = ", head_size,
           "], got ", rot_dim);
  const int64_t tokens = positions.size(0);
  const int64_t hq = check_qk(query, "query", tokens, head_size);
  const int64_t hk = check_qk(key, "key", tokens, head_size);
  check_same_dtype(key, query, "key", "query");
  const int64_t max_pos = cos_sin_cache.size(0);
  const int64_t* pos = positions.data_ptr<int64_t>();
  for (int64_t t = 0; t < tokens; ++t) {
    RS_CHECK(pos[t] >= 0 && pos[t] < max_pos, "positions[", t, "] = ", pos[t],
             " is out of range [0, ", max_pos, ")");
  }
  const RopeKernels k = kernels(is_neox);
  const int64_t half = rot_dim / 2;
  const float* cache = cos_sin_cache.data_ptr<float>();
  const bool f32 = query.scalar_type() == at::kFloat;
  const int64_t qs = query.stride(0), ks = key.stride(0);
  void* qp = query.data_ptr();
  void* kp = key.data_ptr();
  at::parallel_for(0, tokens, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* cos = cache + pos[t] * rot_dim;
      const float* sin = cos + half;
      if (f32) {
        k.f32(static_cast<float*>(qp) + t * qs, hq, head_size, cos, sin, half);
        k.f32(static_cast<float*>(kp) + t * ks, hk, head_size, cos, sin, half);
      } else {
        k.bf16(static_cast<uint16_t*>(qp) + t * qs, hq, head_size, cos, sin, half);
        k.bf16(static_cast<uint16_t*>(kp) + t * ks, hk, head_size, cos, sin, half);
      }
    }
  });
}

}  // namespace radixserve::cpu
