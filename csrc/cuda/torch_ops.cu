// Torch-facing CUDA ops for attention, norm, rope and activation: argument checks, then the
// raw-pointer launchers on the current stream of the tensors' device.
// Tested on an H200 (tools/gpu_check.sh).
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <climits>
#include <utility>

#include "cuda/activation.cuh"
#include "cuda/attention.cuh"
#include "cuda/cascade_attention.cuh"
#include "cuda/norm.cuh"
#include "cuda/rope.cuh"
#include "cuda/torch_checks.h"
#include "cuda/torch_ops.h"

namespace radixserve::cuda {
namespace {

cudaStream_t current_stream(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

// The checks shared by decode and extend; fills everything of AttentionArgs but the extend part.
AttentionArgs attention_args(const char* op, const at::Tensor& out, const at::Tensor& q,
                             const at::Tensor& k_cache, const at::Tensor& v_cache,
                             const at::Tensor& req_to_token, const at::Tensor& req_pool_indices,
                             const at::Tensor& seq_lens, double scale, int64_t sliding_window) {
  check_cuda_tensor(q, "q", 3);
  check_cuda_tensor(out, "out", 3);
  check_cuda_tensor(k_cache, "k_cache", 3);
  check_cuda_tensor(v_cache, "v_cache", 3);
  check_cuda_tensor(req_to_token, "req_to_token", 2);
  check_cuda_tensor(req_pool_indices, "req_pool_indices", 1);
  check_cuda_tensor(seq_lens, "seq_lens", 1);
  for (const auto& [t, name] : {std::pair{&out, "out"}, {&k_cache, "k_cache"},
                                {&v_cache, "v_cache"}, {&req_to_token, "req_to_token"},
                                {&req_pool_indices, "req_pool_indices"}, {&seq_lens, "seq_lens"}}) {
    check_same_device(*t, name, q);
  }
  float_dtype(q, "q");
  for (const auto& [t, name] :
       {std::pair{&out, "out"}, {&k_cache, "k_cache"}, {&v_cache, "v_cache"}}) {
    check_dtype(*t, name, q.scalar_type());
  }
  check_dtype(req_to_token, "req_to_token", at::kInt);
  check_dtype(req_pool_indices, "req_pool_indices", at::kLong);
  check_dtype(seq_lens, "seq_lens", at::kLong);
  RS_CUDA_CHECK_VALUE(out.sizes() == q.sizes(), op, ": out must have the shape of q ", q.sizes(),
                    ", got ", out.sizes());
  RS_CUDA_CHECK_VALUE(k_cache.sizes() == v_cache.sizes(), op,
                    ": k_cache and v_cache must have one shape, got ", k_cache.sizes(), " and ",
                    v_cache.sizes());
  const int64_t hq = q.size(1), hkv = k_cache.size(1), d = q.size(2);
  check_size(k_cache, "k_cache", 2, d);
  RS_CUDA_CHECK_VALUE(hkv > 0 && hq % hkv == 0, op, ": q heads (", hq,
                    ") must be a multiple of kv heads (", hkv, ")");
  RS_CUDA_CHECK_VALUE(is_supported_head_dim(static_cast<int>(d)), op,
                    ": head_dim must be one of 32, 64, 96, 128, 256 on CUDA, got ", d);
  const int64_t batch = req_pool_indices.size(0);
  check_size(seq_lens, "seq_lens", 0, batch);
  RS_CUDA_CHECK_VALUE(batch <= 65535 && hkv <= 65535, op, ": batch and kv heads must be <= 65535");

  AttentionArgs a;
  a.out = out.data_ptr();
  a.q = q.data_ptr();
  a.k_cache = k_cache.data_ptr();
  a.v_cache = v_cache.data_ptr();
  a.req_to_token = req_to_token.data_ptr<int32_t>();
  a.max_context = req_to_token.size(1);
  a.req_pool_indices = req_pool_indices.data_ptr<int64_t>();
  a.seq_lens = seq_lens.data_ptr<int64_t>();
  a.batch = batch;
  a.num_tokens = q.size(0);
  a.num_q_heads = static_cast<int>(hq);
  a.num_kv_heads = static_cast<int>(hkv);
  a.head_dim = static_cast<int>(d);
  a.scale = static_cast<float>(scale);
  // Any window of at least the context length is no window; keep the value in int range.
  a.sliding_window = static_cast<int>(std::clamp<int64_t>(sliding_window, -1, INT32_MAX));
  return a;
}

}  // namespace

void store_kv(const at::Tensor& k_cache, const at::Tensor& v_cache, const at::Tensor& loc,
              const at::Tensor& k, const at::Tensor& v) {
  check_cuda_tensor(k_cache, "k_cache", 3);
  check_cuda_tensor(v_cache, "v_cache", 3);
  check_cuda_tensor(loc, "loc", 1);
  check_cuda_tensor(k, "k", 3);
  check_cuda_tensor(v, "v", 3);
  for (const auto& [t, name] :
       {std::pair{&v_cache, "v_cache"}, {&loc, "loc"}, {&k, "k"}, {&v, "v"}}) {
    check_same_device(*t, name, k_cache);
  }
  const DType dtype = float_dtype(k_cache, "k_cache");
  for (const auto& [t, name] : {std::pair{&v_cache, "v_cache"}, {&k, "k"}, {&v, "v"}}) {
    check_dtype(*t, name, k_cache.scalar_type());
  }
  RS_CUDA_CHECK_VALUE(loc.scalar_type() == at::kLong || loc.scalar_type() == at::kInt,
                    "loc must be int64 or int32, got ", loc.scalar_type());
  RS_CUDA_CHECK_VALUE(k_cache.sizes() == v_cache.sizes(), "k_cache and v_cache must have one shape");
  RS_CUDA_CHECK_VALUE(k.sizes() == v.sizes(), "k and v must have one shape");
  check_size(k, "k", 0, loc.size(0));
  check_size(k, "k", 1, k_cache.size(1));
  check_size(k, "k", 2, k_cache.size(2));
  const c10::cuda::CUDAGuard guard(k_cache.device());
  const at::Tensor loc64 = loc.scalar_type() == at::kLong ? loc : loc.to(at::kLong);
  check_launch(launch_store_kv(dtype, k_cache.data_ptr(), v_cache.data_ptr(),
                               loc64.data_ptr<int64_t>(), k.data_ptr(), v.data_ptr(), k.size(0),
                               k.size(1) * k.size(2), current_stream(k_cache)),
               "store_kv");
}

std::vector<int64_t> attention_head_dims() {
  return std::vector<int64_t>(std::begin(kAttentionHeadDims), std::end(kAttentionHeadDims));
}

void decode_attention(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k_cache,
                      const at::Tensor& v_cache, const at::Tensor& req_to_token,
                      const at::Tensor& req_pool_indices, const at::Tensor& seq_lens,
                      double scale, int64_t sliding_window) {
  AttentionArgs a = attention_args("decode_attention", out, q, k_cache, v_cache, req_to_token,
                                   req_pool_indices, seq_lens, scale, sliding_window);
  check_size(q, "q", 0, a.batch);
  const c10::cuda::CUDAGuard guard(q.device());
  int sm_count = 1;
  check_launch(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, q.get_device()),
               "decode_attention");
  a.num_splits = choose_decode_splits(a.batch, a.num_kv_heads, a.num_q_heads / a.num_kv_heads,
                                      a.max_context, sm_count);
  // Flash-decoding scratch; freeing it after the launches is safe: the caching allocator
  // hands memory out again in stream order.
  at::Tensor partial_acc, partial_ml;
  if (a.num_splits > 1) {
    const auto opts = q.options().dtype(at::kFloat);
    partial_acc = at::empty({a.batch, a.num_q_heads, a.num_splits, a.head_dim}, opts);
    partial_ml = at::empty({a.batch, a.num_q_heads, a.num_splits, 2}, opts);
    a.partial_acc = partial_acc.data_ptr<float>();
    a.partial_ml = partial_ml.data_ptr<float>();
  }
  check_launch(launch_decode_attention(float_dtype(q, "q"), a, current_stream(q)),
               "decode_attention");
}

void cascade_decode_attention(const at::Tensor& out, const at::Tensor& q,
                              const at::Tensor& k_cache, const at::Tensor& v_cache,
                              const at::Tensor& req_to_token, const at::Tensor& req_pool_indices,
                              const at::Tensor& seq_lens, const at::Tensor& group_ids,
                              const at::Tensor& group_prefix_lens, double scale,
                              int64_t sliding_window) {
  constexpr const char* op = "cascade_decode_attention";
  AttentionArgs a = attention_args(op, out, q, k_cache, v_cache, req_to_token, req_pool_indices,
                                   seq_lens, scale, sliding_window);
  check_size(q, "q", 0, a.batch);
  check_cuda_tensor(group_ids, "group_ids", 1);
  check_cuda_tensor(group_prefix_lens, "group_prefix_lens", 1);
  check_same_device(group_ids, "group_ids", q);
  check_same_device(group_prefix_lens, "group_prefix_lens", q);
  check_dtype(group_ids, "group_ids", at::kLong);
  check_dtype(group_prefix_lens, "group_prefix_lens", at::kLong);
  check_size(group_ids, "group_ids", 0, a.batch);
  const int64_t num_groups = group_prefix_lens.size(0);
  RS_CUDA_CHECK_VALUE(num_groups <= 65535, op, ": at most 65535 groups, got ", num_groups);
  // As on the CPU: a sliding window (or no group) is plain decode attention.
  if (sliding_window > 0 || num_groups == 0 || a.batch == 0) {
    decode_attention(out, q, k_cache, v_cache, req_to_token, req_pool_indices, seq_lens, scale,
                     sliding_window);
    return;
  }
  const c10::cuda::CUDAGuard guard(q.device());
  int sm_count = 1;
  check_launch(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, q.get_device()),
               op);
  const int group = a.num_q_heads / a.num_kv_heads;
  const int suffix_splits =
      choose_decode_splits(a.batch, a.num_kv_heads, group, a.max_context, sm_count);
  // The prefix pass has num_groups x kv heads x (about batch / num_groups x group rows) blocks.
  const int rows_per_group = static_cast<int>((a.batch + num_groups - 1) / num_groups) * group;
  const int prefix_splits =
      choose_decode_splits(num_groups, a.num_kv_heads, rows_per_group, a.max_context, sm_count);
  const int stride = suffix_splits + prefix_splits;
  const auto float_opts = q.options().dtype(at::kFloat);
  at::Tensor partial_acc = at::empty({a.batch, a.num_q_heads, stride, a.head_dim}, float_opts);
  at::Tensor partial_ml = at::empty({a.batch, a.num_q_heads, stride, 2}, float_opts);
  // Prefix slots of requests outside every group stay empty (m = -inf, l = 0: weight 0).
  at::Tensor prefix_ml = partial_ml.narrow(2, suffix_splits, prefix_splits);
  prefix_ml.select(3, 0).fill_(-INFINITY);
  prefix_ml.select(3, 1).zero_();
  // The groups on the device, with no host sync: rows sorted by group (stable, so a group's
  // first member comes first; -1 rows lead), offsets from the counts.
  const at::Tensor order = group_ids.argsort(/*stable=*/true);
  at::Tensor counts = at::empty({num_groups + 1}, group_ids.options()).zero_();
  counts.scatter_add_(0, group_ids.add(1), group_ids.new_ones({a.batch}));
  at::Tensor starts = at::empty({num_groups + 2}, group_ids.options()).zero_();
  starts.narrow(0, 1, num_groups + 1).copy_(counts.cumsum(0));
  const at::Tensor key_begin =
      group_prefix_lens.index_select(0, group_ids.clamp_min(0)).masked_fill(group_ids.lt(0), 0);

  const DType dtype = float_dtype(q, "q");
  const cudaStream_t stream = current_stream(q);
  AttentionArgs parts = a;
  parts.num_splits = suffix_splits;
  parts.partial_stride = stride;
  parts.partial_acc = partial_acc.data_ptr<float>();
  parts.partial_ml = partial_ml.data_ptr<float>();
  parts.key_begin = key_begin.data_ptr<int64_t>();
  check_launch(launch_decode_partials(dtype, parts, stream), op);
  CascadeGroups groups;
  groups.member_order = order.data_ptr<int64_t>();
  groups.group_start = starts.data_ptr<int64_t>() + 1;  // group g: [starts[g + 1], starts[g + 2])
  groups.prefix_lens = group_prefix_lens.data_ptr<int64_t>();
  groups.num_groups = num_groups;
  groups.prefix_splits = prefix_splits;
  check_launch(launch_cascade_prefix(dtype, parts, groups, suffix_splits, stream), op);
  check_launch(launch_combine_partials(dtype, a.out, parts.partial_acc, parts.partial_ml,
                                       a.batch * a.num_q_heads, stride, a.head_dim, stream),
               op);
}

void extend_attention(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k_cache,
                      const at::Tensor& v_cache, const at::Tensor& req_to_token,
                      const at::Tensor& req_pool_indices, const at::Tensor& seq_lens,
                      const at::Tensor& extend_seq_lens, const at::Tensor& extend_start_loc,
                      double scale, int64_t sliding_window) {
  AttentionArgs a = attention_args("extend_attention", out, q, k_cache, v_cache, req_to_token,
                                   req_pool_indices, seq_lens, scale, sliding_window);
  check_cuda_tensor(extend_seq_lens, "extend_seq_lens", 1);
  check_cuda_tensor(extend_start_loc, "extend_start_loc", 1);
  check_same_device(extend_seq_lens, "extend_seq_lens", q);
  check_same_device(extend_start_loc, "extend_start_loc", q);
  check_dtype(extend_seq_lens, "extend_seq_lens", at::kLong);
  check_dtype(extend_start_loc, "extend_start_loc", at::kLong);
  check_size(extend_seq_lens, "extend_seq_lens", 0, a.batch);
  check_size(extend_start_loc, "extend_start_loc", 0, a.batch);
  a.extend_seq_lens = extend_seq_lens.data_ptr<int64_t>();
  a.extend_start_loc = extend_start_loc.data_ptr<int64_t>();
  const c10::cuda::CUDAGuard guard(q.device());
  check_launch(launch_extend_attention(float_dtype(q, "q"), a, current_stream(q)),
               "extend_attention");
}

namespace {

// x [N, H] of a float dtype, weight [H] of x's dtype or float32; returns the launchers' dtypes.
std::pair<DType, DType> check_norm(const at::Tensor& x, const at::Tensor& other,
                                   const char* other_name, const at::Tensor& weight) {
  check_cuda_tensor(x, "x", 2);
  check_cuda_tensor(other, other_name, 2);
  check_cuda_tensor(weight, "weight", 1);
  check_same_device(other, other_name, x);
  check_same_device(weight, "weight", x);
  const DType dtype = float_dtype(x, "x");
  check_dtype(other, other_name, x.scalar_type());
  RS_CUDA_CHECK_VALUE(other.sizes() == x.sizes(), other_name, " must have the shape of x ",
                    x.sizes(), ", got ", other.sizes());
  check_size(weight, "weight", 0, x.size(1));
  RS_CUDA_CHECK_VALUE(weight.scalar_type() == x.scalar_type() || weight.scalar_type() == at::kFloat,
                    "weight must be float32 or x's dtype (", x.scalar_type(), "), got ",
                    weight.scalar_type());
  return {dtype, float_dtype(weight, "weight")};
}

}  // namespace

void rms_norm(const at::Tensor& out, const at::Tensor& x, const at::Tensor& weight, double eps) {
  const auto [dtype, wdtype] = check_norm(x, out, "out", weight);
  RS_CUDA_CHECK_VALUE(eps >= 0.0, "eps must be >= 0, got ", eps);
  const c10::cuda::CUDAGuard guard(x.device());
  check_launch(launch_rms_norm(dtype, wdtype, out.data_ptr(), x.data_ptr(), weight.data_ptr(),
                               x.size(0), x.size(1), static_cast<float>(eps), current_stream(x)),
               "rms_norm");
}

void fused_add_rms_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                        double eps) {
  const auto [dtype, wdtype] = check_norm(x, residual, "residual", weight);
  RS_CUDA_CHECK_VALUE(eps >= 0.0, "eps must be >= 0, got ", eps);
  const c10::cuda::CUDAGuard guard(x.device());
  check_launch(launch_fused_add_rms_norm(dtype, wdtype, x.data_ptr(), residual.data_ptr(),
                                         weight.data_ptr(), x.size(0), x.size(1),
                                         static_cast<float>(eps), current_stream(x)),
               "fused_add_rms_norm");
}

namespace {

// A [T, H*D] or [T, H, D] tensor whose token rows are each contiguous (row starts may be apart,
// as in q and k sliced out of one fused qkv tensor). Returns the row stride in elements.
int64_t check_rope_rows(const at::Tensor& t, const char* name, const at::Tensor& positions) {
  RS_CUDA_CHECK_VALUE(t.defined(), name, " must be a tensor");
  RS_CUDA_CHECK_VALUE(t.is_cuda(), name, " must be a CUDA tensor, got device ", t.device());
  check_same_device(t, name, positions);
  RS_CUDA_CHECK_VALUE(t.dim() == 2 || t.dim() == 3, name, " must be [T, H*D] or [T, H, D], got ",
                    t.sizes());
  const bool rows_contiguous =
      t.dim() == 2 ? t.stride(1) == 1 : (t.stride(2) == 1 && t.stride(1) == t.size(2));
  RS_CUDA_CHECK_VALUE(rows_contiguous, name, ": each token row must be contiguous, got strides ",
                    t.strides());
  check_size(t, name, 0, positions.size(0));
  return t.stride(0);
}

}  // namespace

void rotary_embedding(const at::Tensor& positions, const at::Tensor& query,
                      const at::Tensor& key, int64_t head_size, const at::Tensor& cos_sin_cache,
                      bool is_neox) {
  check_cuda_tensor(positions, "positions", 1);
  check_cuda_tensor(cos_sin_cache, "cos_sin_cache", 2);
  check_same_device(cos_sin_cache, "cos_sin_cache", positions);
  check_dtype(positions, "positions", at::kLong);
  check_dtype(cos_sin_cache, "cos_sin_cache", at::kFloat);
  const int64_t q_stride = check_rope_rows(query, "query", positions);
  const int64_t k_stride = check_rope_rows(key, "key", positions);
  const DType dtype = float_dtype(query, "query");
  check_dtype(key, "key", query.scalar_type());
  const int64_t tokens = positions.size(0);
  RS_CUDA_CHECK_VALUE(head_size > 0, "head_size must be > 0, got ", head_size);
  const int64_t q_row = tokens ? query.numel() / tokens : 0;
  const int64_t k_row = tokens ? key.numel() / tokens : 0;
  RS_CUDA_CHECK_VALUE(q_row % head_size == 0 && k_row % head_size == 0,
                    "query and key rows must be whole heads of head_size ", head_size);
  const int64_t rot_dim = cos_sin_cache.size(1);
  RS_CUDA_CHECK_VALUE(rot_dim > 0 && rot_dim % 2 == 0 && rot_dim <= head_size,
                    "cos_sin_cache.size(1) (rot_dim) must be even and in (0, head_size], got ",
                    rot_dim);
  const c10::cuda::CUDAGuard guard(query.device());
  check_launch(launch_rotary_embedding(dtype, positions.data_ptr<int64_t>(), query.data_ptr(),
                                       q_stride, key.data_ptr(), k_stride, tokens,
                                       static_cast<int>(q_row / head_size),
                                       static_cast<int>(k_row / head_size),
                                       static_cast<int>(head_size),
                                       cos_sin_cache.data_ptr<float>(),
                                       static_cast<int>(rot_dim), is_neox, current_stream(query)),
               "rotary_embedding");
}

void silu_and_mul(const at::Tensor& out, const at::Tensor& x) {
  check_cuda_tensor(x, "x", 2);
  check_cuda_tensor(out, "out", 2);
  check_same_device(out, "out", x);
  const DType dtype = float_dtype(x, "x");
  check_dtype(out, "out", x.scalar_type());
  RS_CUDA_CHECK_VALUE(x.size(1) % 2 == 0, "x.size(1) must be even (gate then up), got ", x.size(1));
  check_size(out, "out", 0, x.size(0));
  check_size(out, "out", 1, x.size(1) / 2);
  const c10::cuda::CUDAGuard guard(x.device());
  check_launch(launch_silu_and_mul(dtype, out.data_ptr(), x.data_ptr(), x.size(0), x.size(1) / 2,
                                   current_stream(x)),
               "silu_and_mul");
}

}  // namespace radixserve::cuda
