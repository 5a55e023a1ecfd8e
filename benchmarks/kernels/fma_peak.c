// The fp32 FMA ceiling of one core: 12 independent 256-bit FMA chains (enough to cover the
// FMA latency on two FMA pipes), timed in thread CPU time so other jobs do not count.
// Build and run: gcc -O3 -mavx2 -mfma benchmarks/kernels/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak
// (benchmarks/results/embeddings.md compares the encoder's GFLOP/s per CPU second with it).
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

int main(void) {
  enum { kChains = 12 };
  const long iters = 200000000;
  __m256 acc[kChains];
  const __m256 b = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-7f);
  for (int i = 0; i < kChains; i++) acc[i] = _mm256_set1_ps((float)i);
  struct timespec t0, t1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  for (long n = 0; n < iters; n++)
    for (int i = 0; i < kChains; i++) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  const double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
  float lanes[8], sum = 0.0f;  // use the results so the loop is not optimised away
  for (int i = 0; i < kChains; i++) {
    _mm256_storeu_ps(lanes, acc[i]);
    sum += lanes[0];
  }
  printf("%.1f GFLOP/s per CPU second (checksum %g)\n", iters * kChains * 16.0 / s / 1e9, sum);
  return 0;
}
