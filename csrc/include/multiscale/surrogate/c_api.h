/* C API of the multiscale surrogate evaluator (libmultiscale_surrogate).
 *
 * Loads a surrogate exported with multiscale.export_surrogate(...) (format: docs/surrogate_format.md)
 * and evaluates the learned effective SDE dX = b(X) dt + S(X) dW on the CPU, in float64.
 * Thread safety: a handle is read-only after open; evaluation functions may be called from
 * several threads at once. Every function returns MS_OK (0) or an error code and never aborts;
 * the message of the last error on the calling thread is ms_surrogate_last_error().
 *
 * Arrays are C order: x is (n, dim); drift writes (n, dim); diffusion and noise write
 * (n, dim, dim). member = -1 selects the ensemble mean (mean drift, mean A = S S^T, and the
 * Cholesky factor of the mean A for noise); 0 <= member < members selects one member.
 *
 * Ring surrogates (format version 2, kind ring: a LocalEffectiveSDE on K = dim sites,
 * dX = [R(X) + U(X)] dt + S(X) dW with local weight-shared networks and diagonal S) use the same
 * handle: drift is the total drift R + U, diffusion the diagonal A = S^2 as (n, K, K) matrices,
 * noise its square root. ms_surrogate_ring_closure gives U and the diagonal S as (n, K) arrays
 * (member = -1: mean U and S = sqrt(mean S^2)), and ms_surrogate_ring_resolved the resolved
 * drift R (n, K) evaluated from the program stored in the file (zeros when the file has none:
 * see ms_surrogate_has_resolved).
 */
#ifndef MULTISCALE_SURROGATE_C_API_H
#define MULTISCALE_SURROGATE_C_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MS_SURROGATE_OK 0
#define MS_SURROGATE_ERR_IO 1        /* file missing or unreadable */
#define MS_SURROGATE_ERR_FORMAT 2    /* malformed, truncated or corrupted file */
#define MS_SURROGATE_ERR_VERSION 3   /* unsupported format version */
#define MS_SURROGATE_ERR_ARGUMENT 4  /* null pointer, n < 0, member out of range */
#define MS_SURROGATE_ERR_NUMERIC 5   /* non-finite result (e.g. non-positive-definite mean A) */

#define MS_SURROGATE_KIND_SDE 0   /* ms_surrogate_kind: an EffectiveSDE (any format version) */
#define MS_SURROGATE_KIND_RING 1  /* a ring (LocalEffectiveSDE), format version 2 */

typedef struct ms_surrogate ms_surrogate;

/* Open a surrogate file; returns NULL on failure (see ms_surrogate_last_error). */
ms_surrogate* ms_surrogate_open(const char* path);
void ms_surrogate_close(ms_surrogate* s);

int ms_surrogate_dim(const ms_surrogate* s);
int ms_surrogate_members(const ms_surrogate* s);
/* Name of slow variable i (0 <= i < dim), or NULL. */
const char* ms_surrogate_name(const ms_surrogate* s, int i);

int ms_surrogate_drift(const ms_surrogate* s, const double* x, int64_t n, int member, double* out);
int ms_surrogate_diffusion(const ms_surrogate* s, const double* x, int64_t n, int member, double* out);
int ms_surrogate_noise(const ms_surrogate* s, const double* x, int64_t n, int member, double* out);

/* MS_SURROGATE_KIND_SDE or MS_SURROGATE_KIND_RING; -1 for NULL. */
int ms_surrogate_kind(const ms_surrogate* s);
/* Ring stencil half-width s (site k sees k-s .. k+s); -1 for NULL or a surrogate that is not a ring. */
int ms_surrogate_stencil(const ms_surrogate* s);
/* 1 if the file holds the resolved drift R, 0 if not; -1 for NULL. */
int ms_surrogate_has_resolved(const ms_surrogate* s);
/* Ring surrogates: x (n, K) -> closure u (n, K) and diagonal noise sigma (n, K); either output may
 * be NULL (not computed), not both. MS_SURROGATE_ERR_ARGUMENT for a surrogate that is not a ring. */
int ms_surrogate_ring_closure(const ms_surrogate* s, const double* x, int64_t n, int member, double* u,
                              double* sigma);
/* Ring surrogates: x (n, K) -> resolved drift r (n, K). */
int ms_surrogate_ring_resolved(const ms_surrogate* s, const double* x, int64_t n, double* r);

/* Message of the last error on this thread ("" if none). */
const char* ms_surrogate_last_error(void);
/* Format version this library reads. */
int ms_surrogate_format_version(void);

#ifdef __cplusplus
}
#endif

#endif /* MULTISCALE_SURROGATE_C_API_H */
