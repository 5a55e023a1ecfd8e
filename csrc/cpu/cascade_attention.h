// Cascade (shared-prefix) decode attention on CPU (docs/internals.md).
//
// Requests of a group share the KV slots of their first P positions (e.g. one cached system
// prompt). Instead of reading that prefix once per request, the kernel attends all the group's
// queries (members x query heads of one kv head) to the prefix in one pass over its K/V blocks
// (each block converted to fp32 once and multiplied with every query: a small GEMM per block),
// attends each request to its own suffix [P, seq_len) (the G query heads of a kv head sharing
// each K/V row), and merges the partial softmax states (max, sum, weighted values) exactly.
// Both passes have AVX-512 and AVX2 builds (cascade_attention_simd.h); the portable fallback is
// the attend kernel itself (every query sees every prefix key, so no mask applies).
#pragma once

#include <cstdint>
#include <cstring>

#include "cpu/attention.h"

namespace radixserve::cpu {

// Copies the K and V token rows (every kv head, `stride` elements) of slots[k0, k1) to ks / vs,
// row after row. The rows are scattered, one page each, and a software prefetch that misses the
// TLB is dropped on this class of host (measured: prefetching ahead gained nothing over plain
// copies), so one byte of every row is loaded first: these independent loads walk the page
// tables of all the rows at once (as many walks in flight as the core allows); the remaining
// lines are then prefetched together and the rows copied. A pure gather keeps more rows in
// flight than loads spread among the products would (the suffix pass; the compute-bound prefix
// pass hides its fetches under the products instead, which measured faster there).
template <typename TKV>
inline void gather_token_rows(const TKV* k_cache, const TKV* v_cache, const int32_t* slots,
                              int64_t k0, int64_t k1, int64_t stride, TKV* ks, TKV* vs) {
  const int64_t row_bytes = stride * static_cast<int64_t>(sizeof(TKV));
  int sink = 0;
  for (int64_t k = k0; k < k1; ++k) {
    sink += *reinterpret_cast<const volatile char*>(k_cache + slots[k] * stride);
    sink += *reinterpret_cast<const volatile char*>(v_cache + slots[k] * stride);
  }
  asm volatile("" ::"r"(sink));
  for (int64_t k = k0; k < k1; ++k) {
    const char* kr = reinterpret_cast<const char*>(k_cache + slots[k] * stride);
    const char* vr = reinterpret_cast<const char*>(v_cache + slots[k] * stride);
    for (int64_t o = 64; o < row_bytes; o += 64) {
      __builtin_prefetch(kr + o);
      __builtin_prefetch(vr + o);
    }
  }
  for (int64_t k = k0; k < k1; ++k) {
    std::memcpy(ks + (k - k0) * stride, k_cache + slots[k] * stride, row_bytes);
    std::memcpy(vs + (k - k0) * stride, v_cache + slots[k] * stride, row_bytes);
  }
}

// The suffix pass: each request against its own keys [P, seq_len). Items are (request, key
// range) pairs covering every kv head; a kernel call runs a list of them in order. It gathers
// the scattered K/V token rows of kSuffixStageKeys keys at a time into a staging buffer (a pure
// gather keeps more rows in flight than loads spread among the products), then computes on it.
struct SuffixItem {
  int64_t b;          // batch index
  int64_t key_begin;  // [key_begin, key_end): keys of the request, all visible to its query
  int64_t key_end;
  int64_t part;  // first of its Hq partial rows, ordered (kv head, g)
};

constexpr int kSuffixBlock = 32;  // keys scored together per kv head
constexpr int64_t kSuffixStageKeys = 64;  // keys whose rows are gathered before they are used

template <typename T, typename TKV = T>
struct SuffixWork {
  const T* q;  // [B, Hq, head_dim]
  const int32_t* table;
  int64_t max_ctx;
  const int64_t* pool_rows;  // req_pool_indices
  const TKV* k_cache;        // [num_slots, num_kv_heads, head_dim]
  const TKV* v_cache;
  int num_kv_heads;
  int num_heads;  // G: query heads per kv head
  int head_dim;
  float scale;
  const SuffixItem* items;
  int64_t n_items;
  float* m;    // partial rows, indexed by SuffixItem::part + kv head * G + g
  float* l;
  float* acc;  // [rows, head_dim]
  float* qbuf;  // scratch: Hq * head_dim floats
  void* stage;  // scratch: suffix_stage_bytes(num_kv_heads, head_dim) bytes
};

// Query rows the vectorised prefix kernel holds in one tile (its rows lie across vector lanes).
constexpr int kPrefixTileRows = 48;

// Scratch floats (AttendWork::qbuf) the vectorised prefix kernel needs: Q^T and acc^T of a
// tile, its scores for one key block, and its m, l and rescale factors.
constexpr int64_t prefix_scratch_floats(int64_t head_dim) {
  return kPrefixTileRows * (2 * head_dim + kAttendKeyBlock + 3);
}

constexpr int64_t suffix_stage_bytes(int64_t num_kv_heads, int64_t head_dim) {
  return 2 * kSuffixStageKeys * num_kv_heads * head_dim * static_cast<int64_t>(sizeof(float));
}

// The vectorised builds of both passes. The prefix kernel takes an AttendWork with the promise
// that every query sees every key in [key_begin, key_end) (pos0 and window are ignored); kvbuf
// must hold 2 * kAttendKeyBlock * head_dim floats and qbuf prefix_scratch_floats(head_dim).
// Its item for kv head 0 prefetches whole token rows (every kv head) so that the items of the
// other heads over the same keys, run next, find them in the caches.
struct CascadeKernels {
  void (*prefix_f32)(const AttendWork<float>&);
  void (*prefix_bf16)(const AttendWork<uint16_t>&);
  void (*prefix_f32_bf16kv)(const AttendWork<float, uint16_t>&);
  // Null in both builds: with fp32 caches the attend kernel, one kv head at a time, is faster on
  // cold rows (the whole fp32 token rows are twice as long to gather; measured).
  void (*suffix_f32)(const SuffixWork<float>&);
  void (*suffix_bf16)(const SuffixWork<uint16_t>&);
  void (*suffix_f32_bf16kv)(const SuffixWork<float, uint16_t>&);
  int lanes;  // head_dim % lanes == 0 is required
};

CascadeKernels cascade_kernels_avx2();
CascadeKernels cascade_kernels_avx512();

// out[B,Hq,D] = decode_attention(...) computed with shared prefixes: group_ids int64 [B] names
// each request's group (-1: none, attends alone), group_prefix_lens int64 [num_groups] the
// shared length P of each group (0 <= P <= every member's seq_len). Every member's
// req_to_token row must hold the group's first member's slots in [0, P) (checked: a wrong
// grouping raises ValueError instead of reading another request's KV). With a sliding window
// (> 0) the whole batch falls back to decode_attention.
void cascade_decode_attention(const at::Tensor& out, const at::Tensor& q,
                              const at::Tensor& k_cache, const at::Tensor& v_cache,
                              const at::Tensor& req_to_token, const at::Tensor& req_pool_indices,
                              const at::Tensor& seq_lens, const at::Tensor& group_ids,
                              const at::Tensor& group_prefix_lens, double scale,
                              int64_t sliding_window);

}  // namespace radixserve::cpu
