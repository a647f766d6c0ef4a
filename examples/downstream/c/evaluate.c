/* Evaluate an exported surrogate through the C API.
 *
 *   evaluate FILE MEMBER < states.txt
 *
 * stdin: "n" then n*dim numbers (states, row by row). stdout: for each state, a line
 * "drift b_1 .. b_m", a line "diffusion A_11 A_12 .. A_mm" and a line "noise S_11 .. S_mm"
 * (row-major), with 17 significant digits. Exit code 1 with the library's message on error.
 */
#include <stdio.h>
#include <stdlib.h>

#include "multiscale/surrogate/c_api.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s FILE MEMBER < states\n", argv[0]);
    return 2;
  }
  ms_surrogate* s = ms_surrogate_open(argv[1]);
  if (!s) {
    fprintf(stderr, "error: %s\n", ms_surrogate_last_error());
    return 1;
  }
  const int member = atoi(argv[2]);
  const int m = ms_surrogate_dim(s);
  long n = 0;
  if (scanf("%ld", &n) != 1 || n < 0) {
    fprintf(stderr, "error: expected the number of states on stdin\n");
    ms_surrogate_close(s);
    return 2;
  }
  double* x = malloc(sizeof(double) * (size_t)(n * m + 1));
  double* b = malloc(sizeof(double) * (size_t)(n * m + 1));
  double* a = malloc(sizeof(double) * (size_t)(n * m * m + 1));
  double* q = malloc(sizeof(double) * (size_t)(n * m * m + 1));
  for (long i = 0; i < n * m; ++i)
    if (scanf("%lf", &x[i]) != 1) {
      fprintf(stderr, "error: expected %ld numbers on stdin\n", n * m);
      return 2;
    }
  int rc = ms_surrogate_drift(s, x, n, member, b);
  if (!rc) rc = ms_surrogate_diffusion(s, x, n, member, a);
  if (!rc) rc = ms_surrogate_noise(s, x, n, member, q);
  if (rc) {
    fprintf(stderr, "error %d: %s\n", rc, ms_surrogate_last_error());
  } else {
    for (long i = 0; i < n; ++i) {
      printf("drift");
      for (int j = 0; j < m; ++j) printf(" %.17g", b[i * m + j]);
      printf("\ndiffusion");
      for (int j = 0; j < m * m; ++j) printf(" %.17g", a[i * m * m + j]);
      printf("\nnoise");
      for (int j = 0; j < m * m; ++j) printf(" %.17g", q[i * m * m + j]);
      printf("\n");
    }
  }
  free(x);
  free(b);
  free(a);
  free(q);
  ms_surrogate_close(s);
  return rc ? 1 : 0;
}
