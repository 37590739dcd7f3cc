/* util: errors, checked allocation, files, dtype conversion, time and memory.
 * The bottom of the dependency graph: everything may include it. */
#ifndef YF_UTIL_H
#define YF_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>

/* ---- errors ----------------------------------------------------------------
 * Library functions return 0 on success and -1 on failure, after recording a
 * one-line message (naming the file, tensor or line and what to do) with
 * yf_errorf(). Only the CLI prints it and exits. */
int yf_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* returns -1 */
const char *yf_last_error(void);
void yf_clear_error(void);

/* Always-on check for programmer errors (never for bad data: use yf_errorf). */
#define YF_CHECK(cond)                                                            \
    do {                                                                          \
        if (!(cond)) yf_die_check(#cond, __FILE__, __LINE__);                     \
    } while (0)
void yf_die_check(const char *expr, const char *file, int line) __attribute__((noreturn));

/* ---- memory ------------------------------------------------------------- */
void *yf_malloc(size_t n);            /* aborts with a message when out of memory */
void *yf_calloc(size_t n, size_t sz);
void *yf_realloc(void *p, size_t n);
void *yf_aligned_alloc(size_t n);      /* 64-byte aligned, zeroed; free with free() */
char *yf_strdup(const char *s);
size_t yf_peak_rss_mb(void); /* VmHWM of this process, MiB */
/* Asks the kernel to reclaim the resident pages inside [p, p + bytes)
 * (MADV_PAGEOUT): pages of a mapped file are dropped from this process and
 * read again if touched; anonymous pages are swapped out or kept. Never
 * changes the contents. For weights that have been copied into another
 * layout and are no longer read. */
void yf_release_resident(const void *p, size_t bytes);
/* Maps in the pages of [p, p + bytes) now (MADV_POPULATE_READ; advice only)
 * so that the first product to read a mapped weight does not pay page faults
 * one 4 KiB page at a time. */
void yf_prefault(const void *p, size_t bytes);

/* ---- files -------------------------------------------------------------- */
/* Reads a whole (small) file; *out is NUL-terminated and owned by the caller. */
int yf_read_file(const char *path, char **out, size_t *len);
/* Writes data to path atomically: path.tmp.PID, fsync, rename. */
int yf_write_file_atomic(const char *path, const void *data, size_t len);
/* Opens path.tmp.PID for writing; yf_atomic_commit fsyncs, closes and renames.
 * yf_atomic_abort closes and removes the temporary file. */
typedef struct yf_atomic_file {
    FILE *f;
    char *path;
    char *tmp;
} yf_atomic_file;
int yf_atomic_open(yf_atomic_file *af, const char *path);
int yf_atomic_commit(yf_atomic_file *af);
void yf_atomic_abort(yf_atomic_file *af);
/* Copies a (small) file, writing the copy atomically. */
int yf_copy_file(const char *from, const char *to);
bool yf_file_exists(const char *path);
bool yf_dir_exists(const char *path);
int yf_mkdir_p(const char *path);
char *yf_path_join(const char *dir, const char *name); /* malloc'd */

/* ---- numbers ------------------------------------------------------------ */
static inline float yf_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}
/* Round to nearest even, as torch does; NaN stays NaN. */
static inline uint16_t yf_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    uint32_t round = 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)((v.u + round) >> 16);
}
float yf_f16_to_f32(uint16_t h);
uint16_t yf_f32_to_f16(float f);

double yf_time(void); /* monotonic seconds */

/* ---- random numbers ------------------------------------------------------
 * A small counter-free generator (splitmix64 seeding xoshiro256**): reproducible
 * across platforms, state saved in checkpoints. */
typedef struct yf_rng {
    uint64_t s[4];
} yf_rng;
void yf_rng_seed(yf_rng *r, uint64_t seed);
uint64_t yf_rng_u64(yf_rng *r);
double yf_rng_uniform(yf_rng *r);     /* [0, 1) */
float yf_rng_normal(yf_rng *r);       /* standard normal */

#endif
