// Greedy and random sampling, one thread block per row, following the CPU sampler's definition
// (csrc/cpu/sampling.cpp, steps 1-4) with the same uniform per (seed, step):
//  1. penalties where count > 0 (repetition, frequency, presence), then + logit_bias, then -inf
//     where the packed token bitmask clears the token;
//  2. temperature 0: first argmax;
//  3. z = l / T, m = max z, e = exp(z - m), S = sum e (double). In the order (z desc, id asc)
//     position j is kept while j < top_k, exclusive-prefix-mass < top_p * S and e >= min_p;
//     position 0 always;
//  4. inverse CDF of the kept weights e in token-id order at target u * total.
// The kept set is found without sorting: a 32-step bisection over the order-preserving integer
// key of z finds the value where each cut falls (ties broken by id, as on the CPU). Sums run in a
// different order than on the CPU, so a draw can differ when a boundary is within rounding.
// A NaN logit counts as -inf here. Tested on an H200 (tools/gpu_check.sh).
#include <algorithm>
#include <climits>

#include "cuda/sampling.cuh"

namespace radixserve::cuda {
namespace {

constexpr int kThreads = 512;

struct Shared {
  float f[kWarpSize];
  double d[kWarpSize];
  int i[kWarpSize];
  long long ll[kWarpSize];
  long long chosen;
};

__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

__device__ __forceinline__ double sampling_uniform(uint64_t seed, uint64_t step) {
  return static_cast<double>(splitmix64(splitmix64(seed) ^ step) >> 11) * 0x1.0p-53;
}

// Unsigned key with the order of the floats (-inf lowest); NaN must be mapped away before.
__device__ __forceinline__ uint32_t order_key(float x) {
  const uint32_t bits = __float_as_uint(x);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

__device__ __forceinline__ float key_value(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

__device__ __forceinline__ long long warp_min(long long v) {
  for (int off = kWarpSize / 2; off > 0; off /= 2) v = min(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

__device__ __forceinline__ long long block_min(long long v, long long* scratch) {
  const int lane = threadIdx.x % kWarpSize;
  v = warp_min(v);
  __syncthreads();
  if (lane == 0) scratch[threadIdx.x / kWarpSize] = v;
  __syncthreads();
  return warp_min(lane < static_cast<int>(blockDim.x / kWarpSize) ? scratch[lane] : LLONG_MAX);
}

// Exclusive prefix sum over the threads of the block, in thread order; *total gets the sum.
template <typename V>
__device__ V block_exclusive_scan(V v, V* scratch, V* total) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  V incl = v;
  for (int off = 1; off < kWarpSize; off *= 2) {
    const V up = __shfl_up_sync(0xffffffffu, incl, off);
    if (lane >= off) incl += up;
  }
  V excl = __shfl_up_sync(0xffffffffu, incl, 1);
  if (lane == 0) excl = V{0};
  __syncthreads();
  if (lane == kWarpSize - 1) scratch[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    V w = lane < num_warps ? scratch[lane] : V{0};
    for (int off = 1; off < kWarpSize; off *= 2) {
      const V up = __shfl_up_sync(0xffffffffu, w, off);
      if (lane >= off) w += up;
    }
    if (lane < num_warps) scratch[lane] = w;  // inclusive warp totals
  }
  __syncthreads();
  *total = scratch[num_warps - 1];
  return excl + (warp > 0 ? scratch[warp - 1] : V{0});
}

// First index of the maximum of value(i), i < n (NaN never matches; 0 when nothing does).
template <typename F>
__device__ int64_t block_argmax(F value, int64_t n, Shared& sh) {
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) m = fmaxf(m, value(i));
  m = block_max(m, sh.f);
  long long first = LLONG_MAX;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    if (value(i) == m) {  // a thread's first hit is its smallest index
      first = i;
      break;
    }
  }
  first = block_min(first, sh.ll);
  return first == LLONG_MAX ? 0 : first;
}

// Largest key v with pred(v) true, for pred monotone (true up to some key, pred(0) assumed).
template <typename Pred>
__device__ uint32_t bisect_max_key(Pred pred) {
  uint32_t lo = 0, hi = 0xffffffffu;
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo) / 2 + 1;
    if (pred(mid)) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

__device__ __forceinline__ bool token_allowed(const int32_t* mask, int64_t i) {
  return (static_cast<uint32_t>(mask[i >> 5]) >> (i & 31)) & 1u;
}

__global__ void apply_token_bitmask_kernel(float* __restrict__ logits,
                                           const int32_t* __restrict__ token_bitmask,
                                           int64_t vocab) {
  const int64_t row = blockIdx.y;
  const int32_t* mask = token_bitmask + row * ((vocab + 31) / 32);
  float* l = logits + row * vocab;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < vocab;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (!token_allowed(mask, i)) l[i] = -INFINITY;
  }
}

__global__ void greedy_kernel(const float* __restrict__ logits, int64_t vocab,
                              int64_t* __restrict__ out) {
  __shared__ Shared sh;
  const float* l = logits + blockIdx.x * vocab;
  const int64_t tok = block_argmax([&](int64_t i) { return l[i]; }, vocab, sh);
  if (threadIdx.x == 0) out[blockIdx.x] = tok;
}

__global__ void sample_kernel(SamplingArgs a) {
  __shared__ Shared sh;
  const int64_t row = blockIdx.x;
  const int64_t V = a.vocab;
  const float* l = a.logits + row * V;

  // Step 1: penalties, bias and mask into the workspace row. Separate multiply and subtract (no
  // FMA) round as the CPU does.
  if (a.output_token_counts != nullptr || a.logit_bias != nullptr || a.token_bitmask != nullptr) {
    const int32_t* counts = a.output_token_counts ? a.output_token_counts + row * V : nullptr;
    const float* bias = a.logit_bias ? a.logit_bias + row * V : nullptr;
    const int32_t* mask = a.token_bitmask ? a.token_bitmask + row * ((V + 31) / 32) : nullptr;
    const float rep = a.repetition_penalties ? a.repetition_penalties[row] : 1.0f;
    const float freq = a.frequency_penalties ? a.frequency_penalties[row] : 0.0f;
    const float pres = a.presence_penalties ? a.presence_penalties[row] : 0.0f;
    float* w = a.workspace + row * V;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
      float x = l[i];
      if (counts != nullptr && counts[i] > 0) {
        if (rep != 1.0f) x = x > 0.0f ? x / rep : x * rep;
        x = __fsub_rn(x, __fmul_rn(freq, static_cast<float>(counts[i])));
        x = __fsub_rn(x, pres);
      }
      if (bias != nullptr) x = __fadd_rn(x, bias[i]);
      if (mask != nullptr && !token_allowed(mask, i)) x = -INFINITY;
      w[i] = x;
    }
    __syncthreads();  // the chunked passes below read other threads' entries
    l = w;
  }

  // Step 2.
  const float t = a.temperatures[row];
  if (t == 0.0f) {
    const int64_t tok = block_argmax([&](int64_t i) { return l[i]; }, V, sh);
    if (threadIdx.x == 0) a.next_token_ids[row] = tok;
    return;
  }

  // Step 3.
  auto z_at = [&](int64_t i) {
    const float z = l[i] / t;
    return z != z ? -INFINITY : z;
  };
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, z_at(i));
  m = block_max(m, sh.f);
  if (!isfinite(m)) {
    const int64_t tok = block_argmax(z_at, V, sh);
    if (threadIdx.x == 0) a.next_token_ids[row] = tok;
    return;
  }
  auto e_at = [&](int64_t i) { return expf(z_at(i) - m); };
  auto count_if = [&](auto pred) {
    int c = 0;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) c += pred(order_key(z_at(i))) ? 1 : 0;
    return block_sum(c, sh.i);
  };
  auto mass_if = [&](auto pred) {
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
      const float z = z_at(i);
      if (pred(order_key(z))) s += static_cast<double>(expf(z - m));
    }
    return block_sum(s, sh.d);
  };
  const double S = mass_if([](uint32_t) { return true; });

  const int64_t k = min(static_cast<int64_t>(max(a.top_ks[row], 1)), V);
  const float top_p = a.top_ps[row];
  const float min_p = a.min_ps[row];
  const bool truncated = k < V || top_p < 1.0f || min_p > 0.0f;
  // The kept tokens: key > cut_key, and the first ties_needed (by id) of key == cut_key.
  uint32_t cut_key = 0;
  int64_t ties_needed = V;
  if (truncated) {
    int64_t c = k;
    if (min_p > 0.0f) {
      int n = 0;
      for (int64_t i = threadIdx.x; i < V; i += blockDim.x) n += e_at(i) >= min_p ? 1 : 0;
      c = min(c, static_cast<int64_t>(block_sum(n, sh.i)));
    }
    if (top_p < 1.0f) {
      // c_p: the first position whose exclusive prefix mass reaches top_p * S.
      const double thr = static_cast<double>(top_p) * S;
      const uint32_t vp = bisect_max_key([&](uint32_t v) {
        return mass_if([v](uint32_t key) { return key >= v; }) >= thr;
      });
      const double mass_gt = mass_if([vp](uint32_t key) { return key > vp; });
      const int64_t count_gt = count_if([vp](uint32_t key) { return key > vp; });
      const int64_t n_eq = count_if([vp](uint32_t key) { return key == vp; });
      const double e_tie = static_cast<double>(expf(key_value(vp) - m));
      int64_t r = e_tie > 0.0 ? static_cast<int64_t>(ceil((thr - mass_gt) / e_tie)) : n_eq;
      r = max(int64_t{1}, min(r, n_eq));
      c = min(c, count_gt + r);
    }
    c = max(c, int64_t{1});
    cut_key = bisect_max_key(
        [&](uint32_t v) { return count_if([v](uint32_t key) { return key >= v; }) >= c; });
    ties_needed = c - count_if([cut_key](uint32_t key) { return key > cut_key; });
  }

  // Step 4: each thread owns a contiguous id range, so thread order is token-id order.
  const int64_t chunk = (V + blockDim.x - 1) / blockDim.x;
  const int64_t begin = min(V, threadIdx.x * chunk);
  const int64_t end = min(V, begin + chunk);
  int my_ties = 0;
  if (truncated)
    for (int64_t i = begin; i < end; ++i) my_ties += order_key(z_at(i)) == cut_key ? 1 : 0;
  int all_ties = 0;
  const int tie_base = block_exclusive_scan(my_ties, sh.i, &all_ties);
  auto weight = [&](int64_t i, int& tie_rank) -> double {
    const float z = z_at(i);
    if (truncated) {
      const uint32_t key = order_key(z);
      if (key < cut_key) return 0.0;
      if (key == cut_key && tie_rank++ >= ties_needed) return 0.0;
    }
    return static_cast<double>(expf(z - m));
  };
  double my_sum = 0.0;
  long long my_last = -1;  // last positive-weight token, the fallback against rounding
  int rank = tie_base;
  for (int64_t i = begin; i < end; ++i) {
    const double w = weight(i, rank);
    my_sum += w;
    if (w > 0.0) my_last = i;
  }
  double total = 0.0;
  const double run_before = block_exclusive_scan(my_sum, sh.d, &total);
  const double target = sampling_uniform(static_cast<uint64_t>(a.seeds[row]),
                                         static_cast<uint64_t>(a.steps[row])) * total;
  if (threadIdx.x == 0) sh.chosen = LLONG_MAX;
  __syncthreads();
  const double t2 = target - run_before;
  if (my_sum > 0.0 && t2 >= 0.0 && t2 < my_sum) {
    double acc = 0.0;
    rank = tie_base;
    for (int64_t i = begin; i < end; ++i) {
      acc += weight(i, rank);
      if (acc > t2) {
        atomicMin(&sh.chosen, static_cast<long long>(i));
        break;
      }
    }
  }
  __syncthreads();
  long long tok = sh.chosen;
  if (tok == LLONG_MAX) {  // rounding put the target past every token: take the last one kept
    tok = -block_min(-my_last, sh.ll);
    if (tok < 0) tok = 0;
  }
  if (threadIdx.x == 0) a.next_token_ids[row] = tok;
}

}  // namespace

cudaError_t launch_greedy_sample(const float* logits, int64_t batch, int64_t vocab,
                                 int64_t* next_token_ids, cudaStream_t stream) {
  if (batch == 0) return cudaSuccess;
  if (vocab <= 0) return cudaErrorInvalidValue;
  greedy_kernel<<<static_cast<unsigned>(batch), kThreads, 0, stream>>>(logits, vocab,
                                                                        next_token_ids);
  return cudaGetLastError();
}

cudaError_t launch_sample(const SamplingArgs& args, cudaStream_t stream) {
  if (args.batch == 0) return cudaSuccess;
  if (args.vocab <= 0 || args.vocab >= (int64_t{1} << 31)) return cudaErrorInvalidValue;
  if ((args.output_token_counts != nullptr || args.logit_bias != nullptr ||
       args.token_bitmask != nullptr) &&
      args.workspace == nullptr) {
    return cudaErrorInvalidValue;
  }
  sample_kernel<<<static_cast<unsigned>(args.batch), kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

cudaError_t launch_apply_token_bitmask(float* logits, const int32_t* token_bitmask, int64_t batch,
                                       int64_t vocab, cudaStream_t stream) {
  if (batch == 0 || vocab == 0) return cudaSuccess;
  if (batch > 65535 || vocab < 0) return cudaErrorInvalidValue;  // batch is grid.y
  constexpr int kMaskThreads = 256;
  const int64_t blocks = std::min<int64_t>((vocab + kMaskThreads - 1) / kMaskThreads, 64);
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(batch));
  apply_token_bitmask_kernel<<<grid, kMaskThreads, 0, stream>>>(logits, token_bitmask, vocab);
  return cudaGetLastError();
}

}  // namespace radixserve::cuda
