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

// Brings the K and V token rows (every kv head, `stride` elements) of slots[k0, k1) into the
// caches, for the suffix kernel to compute on in place. The rows are scattered, one page each,
// and a software prefetch is dropped on this class of host when it misses the TLB or finds the
// miss buffers full (measured: prefetching ahead gained nothing over plain copies), so every
// line is fetched by a demand load, which waits for a free buffer instead: first one byte of
// every row (these independent loads walk the page tables of all the rows at once, as many
// walks in flight as the core allows), then one byte of every other line. Before, the rows
// were copied to a staging buffer (loads and stores of every line, and a second copy in L1);
// touching them costs one load per line (cold bf16 suffix pass 508 -> 437 us, measured).
template <typename TKV>
inline void fetch_token_rows(const TKV* k_cache, const TKV* v_cache, const int32_t* slots,
                             int64_t k0, int64_t k1, int64_t stride) {
  const int64_t row_bytes = stride * static_cast<int64_t>(sizeof(TKV));
  int sink = 0;
  for (int64_t k = k0; k < k1; ++k) {
    sink += *reinterpret_cast<const volatile char*>(k_cache + slots[k] * stride);
    sink += *reinterpret_cast<const volatile char*>(v_cache + slots[k] * stride);
  }
  for (int64_t k = k0; k < k1; ++k) {
    const volatile char* kr = reinterpret_cast<const volatile char*>(k_cache + slots[k] * stride);
    const volatile char* vr = reinterpret_cast<const volatile char*>(v_cache + slots[k] * stride);
    for (int64_t o = 64; o < row_bytes; o += 64) sink += kr[o] + vr[o];
  }
  asm volatile("" ::"r"(sink));
}

// The suffix pass: each request against its own keys [P, seq_len). Items are (request, key
// range) pairs covering every kv head; a kernel call runs a list of them in order. It fetches
// the scattered K/V token rows of kSuffixStageKeys keys at a time (fetch_token_rows: a pure
// fetch keeps more rows in flight than loads spread among the products), then computes on them.
struct SuffixItem {
  int64_t b;          // batch index
  int64_t key_begin;  // [key_begin, key_end): keys of the request, all visible to its query
  int64_t key_end;
  int64_t part;  // first of its Hq partial rows, ordered (kv head, g)
};

constexpr int kSuffixBlock = 32;  // keys scored together per kv head
constexpr int64_t kSuffixStageKeys = 64;  // keys whose rows are fetched before they are used

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
};

// Query rows the vectorised prefix kernel holds in one tile (its rows lie across vector lanes).
constexpr int kPrefixTileRows = 48;

// Scratch floats (AttendWork::qbuf) the vectorised prefix kernel needs: Q^T and acc^T of a
// tile, its scores for one key block, and its m, l and rescale factors.
constexpr int64_t prefix_scratch_floats(int64_t head_dim) {
  return kPrefixTileRows * (2 * head_dim + kAttendKeyBlock + 3);
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
  // cold rows (the whole fp32 token rows are twice as long to fetch; measured with the staged
  // copy, before fetch_token_rows).
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
