// Torch-facing CUDA encoder ops (LayerNorm, GELU, encoder attention): the checks of their CPU
// twins (csrc/cpu/encoder_ops.cpp), then the launchers of cuda/encoder_ops.cuh on the current
// stream. Tested on an H200 (tools/gpu_check.sh).
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cmath>

#include "cuda/encoder_ops.cuh"
#include "cuda/torch_checks.h"
#include "cuda/torch_ops.h"

namespace radixserve::cuda {
namespace {

cudaStream_t stream_of(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

// weight / bias: [hidden] on x's device, any float dtype; returned as contiguous float32.
at::Tensor norm_param(const at::Tensor& t, const char* name, const at::Tensor& x) {
  RS_CUDA_CHECK_VALUE(t.defined() && t.is_cuda() && t.dim() == 1, name,
                    " must be a 1-d CUDA tensor");
  check_same_device(t, name, x);
  float_dtype(t, name);
  check_size(t, name, 0, x.size(1));
  return t.to(at::kFloat).contiguous();
}

// q, k or v: [T, heads, head_dim] on q's device and of q's dtype, head_dim contiguous.
void check_qkv(const at::Tensor& t, const char* name, const at::Tensor& q) {
  RS_CUDA_CHECK_VALUE(t.defined() && t.is_cuda(), name, " must be a CUDA tensor");
  check_same_device(t, name, q);
  RS_CUDA_CHECK_VALUE(t.dim() == 3, name, " must be [tokens, heads, head_dim], got shape ",
                    t.sizes());
  check_dtype(t, name, q.scalar_type());
  RS_CUDA_CHECK_VALUE(t.sizes() == q.sizes(), name, " must have the shape of q ", q.sizes(),
                    ", got ", t.sizes());
  RS_CUDA_CHECK_VALUE(t.size(2) == 0 || t.stride(2) == 1, name,
                    "'s last dimension must be contiguous");
}

}  // namespace

void layer_norm(const at::Tensor& out, const at::Tensor& x, const at::Tensor& residual,
                const at::Tensor& weight, const at::Tensor& bias, double eps) {
  check_cuda_tensor(x, "x", 2);
  check_cuda_tensor(out, "out", 2);
  check_same_device(out, "out", x);
  const DType dtype = float_dtype(x, "x");
  check_dtype(out, "out", x.scalar_type());
  RS_CUDA_CHECK_VALUE(out.sizes() == x.sizes(), "out must have the shape of x ", x.sizes(),
                    ", got ", out.sizes());
  if (residual.defined()) {
    check_cuda_tensor(residual, "residual", 2);
    check_same_device(residual, "residual", x);
    check_dtype(residual, "residual", x.scalar_type());
    RS_CUDA_CHECK_VALUE(residual.sizes() == x.sizes(), "residual must have the shape of x ",
                      x.sizes(), ", got ", residual.sizes());
  }
  RS_CUDA_CHECK_VALUE(x.size(1) > 0, "the hidden size must be positive");
  RS_CUDA_CHECK_VALUE(std::isfinite(eps) && eps >= 0.0, "eps must be finite and >= 0, got ", eps);
  const at::Tensor w = norm_param(weight, "weight", x);
  const at::Tensor b = norm_param(bias, "bias", x);
  const c10::cuda::CUDAGuard guard(x.device());
  check_launch(launch_layer_norm(dtype, out.data_ptr(), x.data_ptr(),
                                 residual.defined() ? residual.data_ptr() : nullptr,
                                 w.data_ptr<float>(), b.data_ptr<float>(), x.size(0), x.size(1),
                                 static_cast<float>(eps), stream_of(x)),
               "layer_norm");
}

void gelu(const at::Tensor& out, const at::Tensor& x, bool tanh_approx) {
  RS_CUDA_CHECK_VALUE(x.defined() && out.defined(), "x and out must be tensors");
  RS_CUDA_CHECK_VALUE(x.is_cuda() && out.is_cuda(), "x and out must be CUDA tensors");
  check_same_device(out, "out", x);
  RS_CUDA_CHECK_VALUE(x.is_contiguous() && out.is_contiguous(), "x and out must be contiguous");
  const DType dtype = float_dtype(x, "x");
  check_dtype(out, "out", x.scalar_type());
  RS_CUDA_CHECK_VALUE(out.sizes() == x.sizes(), "out must have the shape of x ", x.sizes(),
                    ", got ", out.sizes());
  const c10::cuda::CUDAGuard guard(x.device());
  check_launch(launch_gelu(dtype, out.data_ptr(), x.data_ptr(), x.numel(), tanh_approx,
                           stream_of(x)),
               "gelu");
}

void encoder_attention(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k,
                       const at::Tensor& v, const at::Tensor& cu_seqlens, double scale) {
  check_qkv(q, "q", q);
  check_qkv(k, "k", q);
  check_qkv(v, "v", q);
  const DType dtype = float_dtype(q, "q");
  check_cuda_tensor(out, "out", 3);
  check_same_device(out, "out", q);
  check_dtype(out, "out", q.scalar_type());
  RS_CUDA_CHECK_VALUE(out.sizes() == q.sizes(), "out must have the shape of q ", q.sizes(),
                    ", got ", out.sizes());
  RS_CUDA_CHECK_VALUE(std::isfinite(scale), "scale must be finite, got ", scale);
  RS_CUDA_CHECK_VALUE(q.size(2) <= kEncoderMaxHeadDim, "head_dim must be <= ", kEncoderMaxHeadDim,
                    ", got ", q.size(2));
  check_cuda_tensor(cu_seqlens, "cu_seqlens", 1);
  check_same_device(cu_seqlens, "cu_seqlens", q);
  RS_CUDA_CHECK_VALUE(cu_seqlens.scalar_type() == at::kInt || cu_seqlens.scalar_type() == at::kLong,
                    "cu_seqlens must be int32 or int64, got ", cu_seqlens.scalar_type());
  RS_CUDA_CHECK_VALUE(cu_seqlens.size(0) >= 1, "cu_seqlens needs at least one entry (0)");
  // The checks read the offsets on the host (one small copy), as the CPU op does.
  const at::Tensor cu = cu_seqlens.to(at::kLong);
  const at::Tensor host = cu.cpu();
  const int64_t* p = host.data_ptr<int64_t>();
  const int64_t seqs = host.size(0) - 1;
  RS_CUDA_CHECK_VALUE(p[0] == 0, "cu_seqlens[0] must be 0, got ", p[0]);
  int64_t max_len = 0;
  for (int64_t s = 0; s < seqs; ++s) {
    RS_CUDA_CHECK_VALUE(p[s + 1] >= p[s], "cu_seqlens must be non-decreasing, got ", p[s],
                      " then ", p[s + 1], " at ", s + 1);
    max_len = std::max(max_len, p[s + 1] - p[s]);
  }
  RS_CUDA_CHECK_VALUE(p[seqs] == q.size(0), "cu_seqlens must end at the number of tokens ",
                    q.size(0), ", got ", p[seqs]);
  const EncoderQkv qkv{q.data_ptr(), k.data_ptr(),  v.data_ptr(), q.stride(0), q.stride(1),
                       k.stride(0),  k.stride(1),  v.stride(0),  v.stride(1)};
  const c10::cuda::CUDAGuard guard(q.device());
  check_launch(launch_encoder_attention(dtype, out.data_ptr(), qkv, cu.data_ptr<int64_t>(), seqs,
                                        max_len, static_cast<int>(q.size(1)),
                                        static_cast<int>(q.size(2)), static_cast<float>(scale),
                                        stream_of(q)),
               "encoder_attention");
}

}  // namespace radixserve::cuda
