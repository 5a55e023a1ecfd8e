// The int16 multiply-add ceiling of one core: 8 independent vpmaddwd + vpaddd chains (256-bit,
// 16 products each), timed in thread CPU time. The small-M int16 linear compares with it
// (benchmarks/kernels/bench_int16_small_m.py, benchmarks/results/embeddings.md).
// Build and run: gcc -O2 benchmarks/kernels/madd_peak.c -o /tmp/madd_peak && /tmp/madd_peak
// (x86-64 with AVX2; inline assembly so the compiler cannot hoist the constant products.)
#include <stdio.h>
#include <time.h>

int main(void) {
  const long iters = 100000000;
  long n = iters;
  struct timespec t0, t1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  __asm__ volatile(
      "vpcmpeqd %%ymm12, %%ymm12, %%ymm12\n\t"
      "vpcmpeqd %%ymm13, %%ymm13, %%ymm13\n\t"
      "1:\n\t"
      "vpmaddwd %%ymm12, %%ymm13, %%ymm14\n\t vpaddd %%ymm14, %%ymm0, %%ymm0\n\t"
      "vpmaddwd %%ymm12, %%ymm13, %%ymm15\n\t vpaddd %%ymm15, %%ymm1, %%ymm1\n\t"
      "vpmaddwd %%ymm12, %%ymm13, %%ymm11\n\t vpaddd %%ymm11, %%ymm2, %%ymm2\n\t"
      "vpmaddwd %%ymm12, %%ymm13, %%ymm10\n\t vpaddd %%ymm10, %%ymm3, %%ymm3\n\t"
      "vpmaddwd %%ymm12, %%ymm13, %%ymm9\n\t vpaddd %%ymm9, %%ymm4, %%ymm4\n\t"
      "vpmaddwd %%ymm12, %%ymm13, %%ymm8\n\t vpaddd %%ymm8, %%ymm5, %%ymm5\n\t"
      "vpmaddwd %%ymm12, %%ymm13, %%ymm7\n\t vpaddd %%ymm7, %%ymm6, %%ymm6\n\t"
      "vpmaddwd %%ymm12, %%ymm13, %%ymm14\n\t vpaddd %%ymm14, %%ymm0, %%ymm0\n\t"
      "dec %0\n\t"
      "jnz 1b\n\t"
      : "+r"(n)
      :
      : "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
        "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  const double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
  printf("%.1f G int16 multiply-adds/s per CPU second (vpmaddwd ymm: %.3f ns each)\n",
         iters * 8 * 16.0 / s / 1e9, s / iters / 8 * 1e9);
  return 0;
}
