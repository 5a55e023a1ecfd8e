// Decode and extend attention over the paged token KV pool, with GQA, causal masking, an optional
// sliding window and an online (flash-style) softmax in float.
// Tested on an H200 (tools/gpu_check.sh).
//
// One kernel serves both: a thread block owns one request, one KV head and a tile of "rows",
// a row being (query token, query head of that KV head's group). Decode is the case of one query
// token per request. The block walks the request's keys in tiles of 32, gathering each tile's
// K and V through req_to_token into shared memory once for all its rows (that is the GQA and
// multi-query reuse). Inside a warp, lane n scores key n of the tile, and for the output each
// lane owns head_dim/32 dimensions. A small decode batch also splits each request's keys over
// several blocks (flash-decoding) whose partial softmax states combine_splits_kernel merges.
#include "cuda/attention.cuh"

#include <algorithm>

namespace radixserve::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kTileKeys = kWarpSize;  // one key per lane when scoring

template <int kDimsPerLane, int kRowsPerWarp>
struct Tile {
  static constexpr int kDim = kDimsPerLane * kWarpSize;
  static constexpr int kRows = kWarps * kRowsPerWarp;
  static constexpr int kKStride = kDim + 1;  // padding: lanes reading different keys hit
                                             // different shared-memory banks
  static constexpr size_t kSharedBytes =
      sizeof(float) * (kRows * kDim + kTileKeys * kKStride + kTileKeys * kDim) +
      sizeof(int64_t) * kTileKeys;
};

template <typename T, int kDimsPerLane, int kRowsPerWarp>
__global__ void __launch_bounds__(kWarps* kWarpSize)
    paged_attention_kernel(AttentionArgs args) {
  using Shape = Tile<kDimsPerLane, kRowsPerWarp>;
  constexpr int kDim = Shape::kDim;
  const int split = blockIdx.x % args.num_splits;
  const int row_tile = blockIdx.x / args.num_splits;
  const int64_t b = blockIdx.y;
  const int kv_head = blockIdx.z;
  const int group = args.num_q_heads / args.num_kv_heads;
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;

  const bool decode = args.extend_seq_lens == nullptr;
  const int64_t seq_len = args.seq_lens[b];
  const int64_t ext_len = decode ? 1 : args.extend_seq_lens[b];
  const int64_t ext_start = decode ? b : args.extend_start_loc[b];
  const int64_t prefix = seq_len - ext_len;  // position of the request's first query token
  const int64_t num_rows = ext_len * group;
  const int64_t first_row = static_cast<int64_t>(row_tile) * Shape::kRows;
  if (first_row >= num_rows || ext_len <= 0) return;  // the whole block leaves together
  const int64_t last_row = min(first_row + Shape::kRows, num_rows) - 1;

  // Keys any row of this block may see: [lo, hi); with splits, this block's share of them.
  int64_t hi = prefix + last_row / group + 1;
  int64_t lo = decode && args.key_begin != nullptr ? args.key_begin[b] : 0;
  if (args.sliding_window > 0) {
    lo = max(lo, prefix + first_row / group - args.sliding_window + 1);
  }
  if (args.num_splits > 1) {
    const int64_t per_split = (hi - lo + args.num_splits - 1) / args.num_splits;
    const int64_t chunk = (per_split + kTileKeys - 1) / kTileKeys * kTileKeys;
    lo += split * chunk;  // may pass hi: then the block only writes an empty partial result
    hi = min(hi, lo + chunk);
  }

  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* q_s = reinterpret_cast<float*>(smem_raw);  // [kRows][kDim], pre-scaled
  float* k_s = q_s + Shape::kRows * kDim;            // [kTileKeys][kKStride]
  float* v_s = k_s + kTileKeys * Shape::kKStride;    // [kTileKeys][kDim]
  int64_t* slot_s = reinterpret_cast<int64_t*>(v_s + kTileKeys * kDim);  // [kTileKeys]

  const T* q = static_cast<const T*>(args.q);
  const T* k_cache = static_cast<const T*>(args.k_cache);
  const T* v_cache = static_cast<const T*>(args.v_cache);
  const int32_t* token_row = args.req_to_token + args.req_pool_indices[b] * args.max_context;

  // Row r of the block: query token j = r / group, query head kv_head * group + r % group.
  for (int i = threadIdx.x; i < Shape::kRows * kDim; i += blockDim.x) {
    const int64_t row = first_row + i / kDim;
    float v = 0.0f;
    if (row < num_rows) {
      const int64_t token = ext_start + row / group;
      const int64_t head = static_cast<int64_t>(kv_head) * group + row % group;
      v = to_float(q[(token * args.num_q_heads + head) * kDim + i % kDim]) * args.scale;
    }
    q_s[i] = v;
  }

  float m[kRowsPerWarp];  // running max of the scores
  float l[kRowsPerWarp];  // running sum of exp(score - m)
  float acc[kRowsPerWarp][kDimsPerLane];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int d = 0; d < kDimsPerLane; ++d) acc[r][d] = 0.0f;
  }

  for (int64_t tile_start = lo; tile_start < hi; tile_start += kTileKeys) {
    __syncthreads();  // the previous tile is no longer read (and q_s is written)
    if (threadIdx.x < kTileKeys) {
      const int64_t pos = tile_start + threadIdx.x;
      slot_s[threadIdx.x] = pos < hi ? token_row[pos] : -1;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < kTileKeys * kDim; i += blockDim.x) {
      const int n = i / kDim;
      const int d = i % kDim;
      const int64_t slot = slot_s[n];
      float kv = 0.0f;
      float vv = 0.0f;
      if (slot >= 0) {
        const int64_t off = (slot * args.num_kv_heads + kv_head) * kDim + d;
        kv = to_float(k_cache[off]);
        vv = to_float(v_cache[off]);
      }
      k_s[n * Shape::kKStride + d] = kv;
      v_s[n * kDim + d] = vv;
    }
    __syncthreads();

    const int64_t key_pos = tile_start + lane;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int local_row = warp * kRowsPerWarp + r;
      const int64_t row = first_row + local_row;
      if (row >= num_rows) break;  // uniform across the warp
      const int64_t q_pos = prefix + row / group;
      bool visible = key_pos < hi && key_pos <= q_pos;
      if (args.sliding_window > 0) visible = visible && key_pos > q_pos - args.sliding_window;
      float s = -INFINITY;
      if (visible) {
        const float* qr = q_s + local_row * kDim;
        const float* kr = k_s + lane * Shape::kKStride;
        s = 0.0f;
#pragma unroll 8
        for (int d = 0; d < kDim; ++d) s += qr[d] * kr[d];
      }
      const float tile_max = warp_max(s);
      if (tile_max == -INFINITY) continue;  // no visible key in this tile for this row
      const float m_new = fmaxf(m[r], tile_max);
      const float p = visible ? expf(s - m_new) : 0.0f;
      const float correction = expf(m[r] - m_new);  // 0 on the first visible tile
      l[r] = l[r] * correction + warp_sum(p);
      m[r] = m_new;
#pragma unroll
      for (int d = 0; d < kDimsPerLane; ++d) acc[r][d] *= correction;
      for (int n = 0; n < kTileKeys; ++n) {
        const float pn = __shfl_sync(0xffffffffu, p, n);
#pragma unroll
        for (int d = 0; d < kDimsPerLane; ++d) {
          acc[r][d] += pn * v_s[n * kDim + d * kWarpSize + lane];
        }
      }
    }
  }

  T* out = static_cast<T*>(args.out);
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t row = first_row + warp * kRowsPerWarp + r;
    if (row >= num_rows) break;
    const int64_t token = ext_start + row / group;
    const int64_t head = static_cast<int64_t>(kv_head) * group + row % group;
    if (args.partial_ml != nullptr) {  // unnormalised partial result, merged by combine_partials
      const int stride = args.partial_stride > 0 ? args.partial_stride : args.num_splits;
      const int64_t part = (token * args.num_q_heads + head) * stride + split;
      if (lane == 0) {
        args.partial_ml[part * 2] = m[r];
        args.partial_ml[part * 2 + 1] = l[r];
      }
#pragma unroll
      for (int d = 0; d < kDimsPerLane; ++d) {
        args.partial_acc[part * kDim + d * kWarpSize + lane] = acc[r][d];
      }
      continue;
    }
    // l is 0 only for inconsistent inputs (a query seeing no key at all): write zeros then.
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    T* o = out + (token * args.num_q_heads + head) * kDim;
#pragma unroll
    for (int d = 0; d < kDimsPerLane; ++d) {
      o[d * kWarpSize + lane] = from_float<T>(acc[r][d] * inv);
    }
  }
}

template <typename T, int kDimsPerLane, int kRowsPerWarp>
cudaError_t launch_tiles(const AttentionArgs& args, int64_t max_rows, cudaStream_t stream) {
  using Shape = Tile<kDimsPerLane, kRowsPerWarp>;
  auto kernel = paged_attention_kernel<T, kDimsPerLane, kRowsPerWarp>;
  // Head dims above 128 need more than the default 48 KiB of shared memory.
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(Shape::kSharedBytes));
  if (err != cudaSuccess) return err;
  const int64_t row_tiles = (max_rows + Shape::kRows - 1) / Shape::kRows;
  const dim3 grid(static_cast<unsigned>(row_tiles * args.num_splits),
                  static_cast<unsigned>(args.batch),
                  static_cast<unsigned>(args.num_kv_heads));
  kernel<<<grid, kWarps * kWarpSize, Shape::kSharedBytes, stream>>>(args);
  return cudaGetLastError();
}

template <int kRowsPerWarp>
cudaError_t launch_attention(DType dtype, const AttentionArgs& args, int64_t max_rows,
                             cudaStream_t stream) {
  if (args.batch == 0 || max_rows == 0) return cudaSuccess;
  if (!is_supported_head_dim(args.head_dim) || args.num_kv_heads <= 0 ||
      args.num_q_heads % args.num_kv_heads != 0 || args.batch > 65535 ||
      args.num_kv_heads > 65535) {
    return cudaErrorInvalidValue;
  }
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    // The head dims of current models; each one is a template instance (compile time).
    switch (args.head_dim / kWarpSize) {
      case 1: return launch_tiles<T, 1, kRowsPerWarp>(args, max_rows, stream);
      case 2: return launch_tiles<T, 2, kRowsPerWarp>(args, max_rows, stream);
      case 3: return launch_tiles<T, 3, kRowsPerWarp>(args, max_rows, stream);
      case 4: return launch_tiles<T, 4, kRowsPerWarp>(args, max_rows, stream);
      case 8: return launch_tiles<T, 8, kRowsPerWarp>(args, max_rows, stream);
      default: return cudaErrorInvalidValue;
    }
  });
}

// One block per (query, head): out = sum_s w_s acc_s / sum_s w_s l_s, w_s = exp(m_s - max m).
template <typename T>
__global__ void combine_splits_kernel(T* __restrict__ out, const float* __restrict__ partial_acc,
                                      const float* __restrict__ partial_ml, int num_splits,
                                      int head_dim) {
  const int64_t query_head = blockIdx.x;
  const float* ml = partial_ml + query_head * num_splits * 2;
  float m_max = -INFINITY;
  for (int s = 0; s < num_splits; ++s) m_max = fmaxf(m_max, ml[s * 2]);
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float num = 0.0f;
    float den = 0.0f;
    for (int s = 0; s < num_splits; ++s) {
      // A split that saw no key has m = -inf and weight 0 (its acc is not read: a cascade
      // state nobody wrote holds only m = -inf, l = 0).
      const float w = m_max == -INFINITY ? 0.0f : expf(ml[s * 2] - m_max);
      if (w == 0.0f) continue;
      num += w * partial_acc[(query_head * num_splits + s) * head_dim + d];
      den += w * ml[s * 2 + 1];
    }
    out[query_head * head_dim + d] = from_float<T>(den > 0.0f ? num / den : 0.0f);
  }
}

template <typename T>
__global__ void store_kv_kernel(T* __restrict__ k_cache, T* __restrict__ v_cache,
                                const int64_t* __restrict__ loc, const T* __restrict__ k,
                                const T* __restrict__ v, int64_t row_elems) {
  const int64_t t = blockIdx.x;
  const int64_t slot = loc[t];
  for (int64_t i = threadIdx.x; i < row_elems; i += blockDim.x) {
    k_cache[slot * row_elems + i] = k[t * row_elems + i];
    v_cache[slot * row_elems + i] = v[t * row_elems + i];
  }
}

}  // namespace

cudaError_t launch_store_kv(DType dtype, void* k_cache, void* v_cache, const int64_t* loc,
                            const void* k, const void* v, int64_t num_tokens, int64_t row_elems,
                            cudaStream_t stream) {
  if (num_tokens == 0 || row_elems == 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    store_kv_kernel<T><<<static_cast<unsigned>(num_tokens), 256, 0, stream>>>(
        static_cast<T*>(k_cache), static_cast<T*>(v_cache), loc, static_cast<const T*>(k),
        static_cast<const T*>(v), row_elems);
    return cudaGetLastError();
  });
}

int choose_decode_splits(int64_t batch, int num_kv_heads, int group, int64_t max_context,
                         int sm_count) {
  const int64_t row_tiles = (group + kWarps - 1) / kWarps;
  const int64_t blocks = std::max<int64_t>(1, batch * num_kv_heads * row_tiles);
  const int64_t want = (2 * static_cast<int64_t>(std::max(sm_count, 1)) + blocks - 1) / blocks;
  const int64_t by_length = std::max<int64_t>(1, (max_context + 255) / 256);
  return static_cast<int>(std::max<int64_t>(1, std::min({want, by_length, int64_t{16}})));
}

cudaError_t launch_combine_partials(DType dtype, void* out, const float* partial_acc,
                                    const float* partial_ml, int64_t rows, int num_parts,
                                    int head_dim, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (num_parts < 1 || head_dim <= 0 || head_dim > 1024) return cudaErrorInvalidValue;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    combine_splits_kernel<T><<<static_cast<unsigned>(rows), head_dim, 0, stream>>>(
        static_cast<T*>(out), partial_acc, partial_ml, num_parts, head_dim);
    return cudaGetLastError();
  });
}

cudaError_t launch_decode_partials(DType dtype, const AttentionArgs& args, cudaStream_t stream) {
  AttentionArgs decode = args;
  decode.extend_seq_lens = nullptr;
  decode.extend_start_loc = nullptr;
  const int stride = decode.partial_stride > 0 ? decode.partial_stride : decode.num_splits;
  if (decode.num_splits < 1 || stride < decode.num_splits || decode.partial_acc == nullptr ||
      decode.partial_ml == nullptr) {
    return cudaErrorInvalidValue;
  }
  // One row per warp: a decode block holds only the query heads of one KV group.
  const int group = args.num_kv_heads > 0 ? args.num_q_heads / args.num_kv_heads : 0;
  return launch_attention<1>(dtype, decode, group, stream);
}

cudaError_t launch_decode_attention(DType dtype, const AttentionArgs& args, cudaStream_t stream) {
  AttentionArgs decode = args;
  decode.partial_stride = 0;
  if (decode.num_splits == 1) {  // normalised output straight from the attention kernel
    decode.partial_acc = nullptr;
    decode.partial_ml = nullptr;
    const int group = args.num_kv_heads > 0 ? args.num_q_heads / args.num_kv_heads : 0;
    decode.extend_seq_lens = nullptr;
    decode.extend_start_loc = nullptr;
    return launch_attention<1>(dtype, decode, group, stream);
  }
  cudaError_t err = launch_decode_partials(dtype, decode, stream);
  if (err != cudaSuccess) return err;
  return launch_combine_partials(dtype, decode.out, decode.partial_acc, decode.partial_ml,
                                 decode.batch * decode.num_q_heads, decode.num_splits,
                                 decode.head_dim, stream);
}

cudaError_t launch_extend_attention(DType dtype, const AttentionArgs& args, cudaStream_t stream) {
  if (args.extend_seq_lens == nullptr || args.extend_start_loc == nullptr) {
    return cudaErrorInvalidValue;
  }
  const int group = args.num_kv_heads > 0 ? args.num_q_heads / args.num_kv_heads : 0;
  AttentionArgs extend = args;
  extend.num_splits = 1;  // many query rows already give enough blocks
  extend.partial_acc = nullptr;
  extend.partial_ml = nullptr;
  extend.key_begin = nullptr;
  // Extend lengths live on the device; num_tokens bounds each of them (blocks past a request's
  // own length exit at once), which avoids a host sync to find the longest.
  return launch_attention<4>(dtype, extend, args.num_tokens * group, stream);
}

}  // namespace radixserve::cuda
