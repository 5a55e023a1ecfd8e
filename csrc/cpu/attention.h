// Paged attention on CPU: store_kv, decode_attention, extend_attention (docs/internals.md).
//
// The torch-facing functions validate arguments, split the work into (request, kv head, key
// chunk or query block) items and run them under OpenMP. Each item calls one "attend" kernel
// (below), built three times: portable (attention.cpp), AVX2 (attention_avx2.cpp) and AVX-512
// (attention_avx512.cpp, both from attention_simd.h), picked at run time.
#pragma once

#include <cstdint>

namespace at {
class Tensor;
}

namespace radixserve::cpu {

struct SplitCall;  // split_call.h

// One item: the G query heads sharing one kv head, for n_q consecutive queries of one request,
// against candidate keys [key_begin, key_end) read through `slots` (the request's req_to_token
// row). Query i sits at position pos0 + i and sees key k iff k <= pos0 + i and, when window > 0,
// k > pos0 + i - window. The kernel (re)initialises and fills the running softmax state:
// m (row max of scaled scores), l (sum of exp(score - m)) and acc (sum of exp(score - m) * v),
// rows ordered (query i, head g). A row that sees no key keeps m = -inf, l = 0, acc = 0.
// Keys the vectorised kernel scores together (sizes AttendWork::kvbuf).
constexpr int kAttendKeyBlock = 32;

// T is the queries' element type, TKV the cache's: float/float, bf16/bf16, or fp32 queries over
// a bfloat16 cache (--kv-cache-dtype bfloat16 on an fp32 model: half the KV bytes).
template <typename T, typename TKV = T>
struct AttendWork {
  const T* q;          // row (i, g) at q + i * q_stride + g * head_dim
  int64_t q_stride;
  int64_t n_q;
  int64_t pos0;
  int64_t key_begin;
  int64_t key_end;
  int64_t window;
  const TKV* k_cache;  // [num_slots, num_kv_heads, head_dim]
  const TKV* v_cache;
  const int32_t* slots;
  int64_t slot_stride;  // num_kv_heads * head_dim
  int64_t head_off;     // kv_head * head_dim
  int num_heads;        // G
  int head_dim;
  float scale;
  float* m;    // [n_q * G]
  float* l;    // [n_q * G]
  float* acc;  // [n_q * G * head_dim]
  float* qbuf;   // scratch, n_q * G * head_dim floats: the queries in fp32, pre-scaled
  float* kvbuf;  // scratch, 2 * kAttendKeyBlock * head_dim floats: a K/V block in fp32
};

// bfloat16 travels as uint16_t in the raw kernels.
struct AttendKernels {
  void (*f32)(const AttendWork<float>&);
  void (*bf16)(const AttendWork<uint16_t>&);
  void (*f32_bf16kv)(const AttendWork<float, uint16_t>&);
  int lanes;  // the vectorised builds need head_dim % lanes == 0
};

// The kernel of one dtype pair (bfloat16 as uint16_t).
inline void call_attend(const AttendKernels& k, const AttendWork<float>& w) { k.f32(w); }
inline void call_attend(const AttendKernels& k, const AttendWork<uint16_t>& w) { k.bf16(w); }
inline void call_attend(const AttendKernels& k, const AttendWork<float, uint16_t>& w) {
  k.f32_bf16kv(w);
}

AttendKernels attend_kernels_avx2();
AttendKernels attend_kernels_avx512();
AttendKernels attend_kernels_generic();  // the portable build (lanes = 1)

// The extend (prefill) kernels: an AttendWork item of many query rows, written out whole: row
// (i, g)'s attention output (acc / l; 0 for a row that sees no key) goes to out + i * q_stride +
// g * head_dim, in q's dtype. m, l, acc, qbuf and kvbuf are scratch.
template <typename T, typename TKV = T>
using ExtendFn = void (*)(const AttendWork<T, TKV>&, T* out);
struct ExtendKernels {
  ExtendFn<float> f32;
  ExtendFn<uint16_t> bf16;
  ExtendFn<float, uint16_t> f32_bf16kv;
  int lanes;  // 1: the portable kernel (the attend one, then the division)
};
inline void call_extend(const ExtendKernels& k, const AttendWork<float>& w, float* out) {
  k.f32(w, out);
}
inline void call_extend(const ExtendKernels& k, const AttendWork<uint16_t>& w, uint16_t* out) {
  k.bf16(w, out);
}
inline void call_extend(const ExtendKernels& k, const AttendWork<float, uint16_t>& w, float* out) {
  k.f32_bf16kv(w, out);
}
// The vectorised builds are blocked flash-attention style (attention_extend_simd.h): query rows
// across vector lanes, kExtendKeyBlock keys gathered and widened once into a contiguous fp32
// block, Q.K^T and P.V as register-blocked micro-GEMMs. Any head_dim. Scratch: qbuf and kvbuf
// sized as below (they also cover the portable kernel's needs).
ExtendKernels extend_kernels_avx2();
ExtendKernels extend_kernels_avx512();
ExtendKernels extend_kernels_generic();
constexpr int kExtendKeyBlock = 32;
// Rows padded to whole vectors of the widest build (16 lanes).
inline int64_t extend_rows_padded(int64_t rows) { return (rows + 15) / 16 * 16; }
inline int64_t extend_qbuf_floats(int64_t rows, int64_t head_dim) {
  return extend_rows_padded(rows) * head_dim;
}
// Key and value blocks, then per row: scores, accumulator and five running values.
inline int64_t extend_kvbuf_floats(int64_t rows, int64_t head_dim) {
  const int64_t per_row = kExtendKeyBlock + head_dim + 5;
  return 2 * kExtendKeyBlock * head_dim + extend_rows_padded(rows) * per_row;
}

// The cache's dtype must be q's, or bfloat16 under float32 queries.
void check_kv_cache_dtype(const at::Tensor& k_cache, const at::Tensor& q);

// decode_attention's argument checks (shapes, dtypes, index ranges, every slot read), shared
// with the cascade kernel (cascade_attention.h).
void check_decode_args(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k_cache,
                       const at::Tensor& v_cache, const at::Tensor& req_to_token,
                       const at::Tensor& req_pool_indices, const at::Tensor& seq_lens,
                       double scale);

// The (q, cache) element types of a checked call (check_kv_cache_dtype).
enum class AttendDtypes { kF32, kBf16, kF32Bf16Kv };
AttendDtypes attend_dtypes(const at::Tensor& q, const at::Tensor& k_cache);

// fn(q_elem, kv_elem) with default-constructed values of the element types of q and the
// cache (float / uint16_t).
template <typename Fn>
void dispatch_attend_dtypes(const at::Tensor& q, const at::Tensor& k_cache, Fn&& fn) {
  switch (attend_dtypes(q, k_cache)) {
    case AttendDtypes::kF32:
      return fn(float{}, float{});
    case AttendDtypes::kBf16:
      return fn(uint16_t{}, uint16_t{});
    case AttendDtypes::kF32Bf16Kv:
      return fn(float{}, uint16_t{});
  }
}

// torch-facing entry points (signatures as in docs/internals.md).
void store_kv(const at::Tensor& k_cache, const at::Tensor& v_cache, const at::Tensor& loc,
              const at::Tensor& k, const at::Tensor& v);
void decode_attention(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k_cache,
                      const at::Tensor& v_cache, const at::Tensor& req_to_token,
                      const at::Tensor& req_pool_indices, const at::Tensor& seq_lens,
                      double scale, int64_t sliding_window);
// decode_attention as a prepared call (split_call.h): key chunks, then their merge.
SplitCall prepare_decode_attention(const at::Tensor& out, const at::Tensor& q,
                                   const at::Tensor& k_cache, const at::Tensor& v_cache,
                                   const at::Tensor& req_to_token,
                                   const at::Tensor& req_pool_indices,
                                   const at::Tensor& seq_lens, double scale,
                                   int64_t sliding_window);
void extend_attention(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k_cache,
                      const at::Tensor& v_cache, const at::Tensor& req_to_token,
                      const at::Tensor& req_pool_indices, const at::Tensor& seq_lens,
                      const at::Tensor& extend_seq_lens, const at::Tensor& extend_start_loc,
                      double scale, int64_t sliding_window);

}  // namespace radixserve::cpu
