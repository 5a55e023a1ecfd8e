// The prefix pass of cascade decode attention (cascade_attention.cuh); the suffix pass and the
// merge are the decode kernel's (attention.cu: key_begin, partial slots, combine_partials).
// Tested on an H200 (tools/gpu_check.sh).
//
// A thread block owns one group, one KV head and a tile of rows, a row being (member, query
// head of that KV head's group); with prefix_splits > 1 also one range of the prefix keys.
// Every row sees every prefix key, so there is no mask: the block walks the prefix in tiles of
// 32 keys gathered through the first member's req_to_token row into shared memory once for
// all its rows (the shared prefix is read once per group instead of once per member), lane n
// scores key n, and each lane owns head_dim / 32 output dimensions, as in attention.cu.
#include "cuda/cascade_attention.cuh"

namespace radixserve::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kRowsPerWarp = 4;
constexpr int kRows = kWarps * kRowsPerWarp;
constexpr int kTileKeys = kWarpSize;

template <int kDimsPerLane>
constexpr size_t shared_bytes() {
  constexpr int kDim = kDimsPerLane * kWarpSize;
  return sizeof(float) * (kRows * kDim + kTileKeys * (kDim + 1) + kTileKeys * kDim) +
         sizeof(int64_t) * kTileKeys;
}

template <typename T, int kDimsPerLane>
__global__ void __launch_bounds__(kWarps* kWarpSize)
    cascade_prefix_kernel(AttentionArgs args, CascadeGroups groups, int first_slot) {
  constexpr int kDim = kDimsPerLane * kWarpSize;
  constexpr int kKStride = kDim + 1;  // bank-conflict padding, as in attention.cu
  const int split = blockIdx.x % groups.prefix_splits;
  const int row_tile = blockIdx.x / groups.prefix_splits;
  const int64_t g = blockIdx.y;
  const int kv_head = blockIdx.z;
  const int group = args.num_q_heads / args.num_kv_heads;
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;

  const int64_t member_begin = groups.group_start[g];
  const int64_t num_members = groups.group_start[g + 1] - member_begin;
  const int64_t num_rows = num_members * group;
  const int64_t first_row = static_cast<int64_t>(row_tile) * kRows;
  if (num_members <= 0 || first_row >= num_rows) return;  // the whole block leaves together
  const int stride = args.partial_stride > 0 ? args.partial_stride : first_slot + 1;

  // This block's share of the prefix keys [0, P).
  const int64_t prefix_len = groups.prefix_lens[g];
  const int64_t per_split = (prefix_len + groups.prefix_splits - 1) / groups.prefix_splits;
  const int64_t chunk = (per_split + kTileKeys - 1) / kTileKeys * kTileKeys;
  const int64_t lo = min(prefix_len, split * chunk);
  const int64_t hi = min(prefix_len, lo + chunk);

  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* q_s = reinterpret_cast<float*>(smem_raw);  // [kRows][kDim], pre-scaled
  float* k_s = q_s + kRows * kDim;                   // [kTileKeys][kKStride]
  float* v_s = k_s + kTileKeys * kKStride;           // [kTileKeys][kDim]
  int64_t* slot_s = reinterpret_cast<int64_t*>(v_s + kTileKeys * kDim);

  const T* q = static_cast<const T*>(args.q);
  const T* k_cache = static_cast<const T*>(args.k_cache);
  const T* v_cache = static_cast<const T*>(args.v_cache);
  const int64_t owner = groups.member_order[member_begin];
  const int32_t* token_row = args.req_to_token + args.req_pool_indices[owner] * args.max_context;

  // Row r: member r / group (batch row member_order[...]), query head kv_head * group + r % group.
  for (int i = threadIdx.x; i < kRows * kDim; i += blockDim.x) {
    const int64_t row = first_row + i / kDim;
    float v = 0.0f;
    if (row < num_rows) {
      const int64_t b = groups.member_order[member_begin + row / group];
      const int64_t head = static_cast<int64_t>(kv_head) * group + row % group;
      v = to_float(q[(b * args.num_q_heads + head) * kDim + i % kDim]) * args.scale;
    }
    q_s[i] = v;
  }

  float m[kRowsPerWarp];
  float l[kRowsPerWarp];
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
      k_s[n * kKStride + d] = kv;
      v_s[n * kDim + d] = vv;
    }
    __syncthreads();

    const bool visible = tile_start + lane < hi;  // no causal mask inside a shared prefix
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int local_row = warp * kRowsPerWarp + r;
      if (first_row + local_row >= num_rows) break;  // uniform across the warp
      float s = -INFINITY;
      if (visible) {
        const float* qr = q_s + local_row * kDim;
        const float* kr = k_s + lane * kKStride;
        s = 0.0f;
#pragma unroll 8
        for (int d = 0; d < kDim; ++d) s += qr[d] * kr[d];
      }
      const float m_new = fmaxf(m[r], warp_max(s));  // every tile has a visible key (lane 0)
      const float p = visible ? expf(s - m_new) : 0.0f;
      const float correction = expf(m[r] - m_new);  // 0 on the first tile
      l[r] = l[r] * correction + warp_sum(p);
      m[r] = m_new;
#pragma unroll
      for (int d = 0; d < kDimsPerLane; ++d) acc[r][d] *= correction;
      for (int n = 0; n < kTileKeys; ++n) {
        const float pn = __shfl_sync(0xffffffffu, p, n);
#pragma unroll
        for (int d = 0; d < kDimsPerLane; ++d) acc[r][d] += pn * v_s[n * kDim + d * kWarpSize + lane];
      }
    }
  }

  // The partial state of each row (m = -inf, l = 0, acc = 0 for an empty key range).
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t row = first_row + warp * kRowsPerWarp + r;
    if (row >= num_rows) break;
    const int64_t b = groups.member_order[member_begin + row / group];
    const int64_t head = static_cast<int64_t>(kv_head) * group + row % group;
    const int64_t part = (b * args.num_q_heads + head) * stride + first_slot + split;
    if (lane == 0) {
      args.partial_ml[part * 2] = m[r];
      args.partial_ml[part * 2 + 1] = l[r];
    }
#pragma unroll
    for (int d = 0; d < kDimsPerLane; ++d) args.partial_acc[part * kDim + d * kWarpSize + lane] = acc[r][d];
  }
}

template <typename T, int kDimsPerLane>
cudaError_t launch_prefix_tiles(const AttentionArgs& args, const CascadeGroups& groups,
                                int first_slot, cudaStream_t stream) {
  auto kernel = cascade_prefix_kernel<T, kDimsPerLane>;
  constexpr size_t bytes = shared_bytes<kDimsPerLane>();
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(bytes));
  if (err != cudaSuccess) return err;
  // Group sizes live on the device: the batch bounds every group's rows (surplus tiles exit).
  const int group = args.num_q_heads / args.num_kv_heads;
  const int64_t row_tiles = (args.batch * group + kRows - 1) / kRows;
  const dim3 grid(static_cast<unsigned>(row_tiles * groups.prefix_splits),
                  static_cast<unsigned>(groups.num_groups), static_cast<unsigned>(args.num_kv_heads));
  kernel<<<grid, kWarps * kWarpSize, bytes, stream>>>(args, groups, first_slot);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_cascade_prefix(DType dtype, const AttentionArgs& args,
                                  const CascadeGroups& groups, int first_slot,
                                  cudaStream_t stream) {
  if (args.batch == 0 || groups.num_groups == 0) return cudaSuccess;
  const int stride = args.partial_stride > 0 ? args.partial_stride : first_slot + 1;
  if (!is_supported_head_dim(args.head_dim) || args.num_kv_heads <= 0 ||
      args.num_q_heads % args.num_kv_heads != 0 || groups.num_groups > 65535 ||
      args.num_kv_heads > 65535 || groups.prefix_splits < 1 || first_slot < 0 ||
      first_slot + groups.prefix_splits > stride || args.partial_acc == nullptr ||
      args.partial_ml == nullptr || groups.member_order == nullptr ||
      groups.group_start == nullptr || groups.prefix_lens == nullptr) {
    return cudaErrorInvalidValue;
  }
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    switch (args.head_dim / kWarpSize) {
      case 1: return launch_prefix_tiles<T, 1>(args, groups, first_slot, stream);
      case 2: return launch_prefix_tiles<T, 2>(args, groups, first_slot, stream);
      case 3: return launch_prefix_tiles<T, 3>(args, groups, first_slot, stream);
      case 4: return launch_prefix_tiles<T, 4>(args, groups, first_slot, stream);
      case 8: return launch_prefix_tiles<T, 8>(args, groups, first_slot, stream);
      default: return cudaErrorInvalidValue;
    }
  });
}

}  // namespace radixserve::cuda
