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

/* A thread's reusable buffers (per-thread scratch): yf_tbuf gives slot i of
 * t grown to at least `bytes` (64-byte aligned; the contents kept only while
 * it does not grow). Each user declares one `static _Thread_local yf_tbufs`;
 * a thread's buffers are all freed when it exits, so a thread that ends
 * (serve's scheduler) leaves nothing behind. */
#define YF_TBUF_SLOTS 5
typedef struct yf_tbufs {
    void *p[YF_TBUF_SLOTS];
    size_t n[YF_TBUF_SLOTS];
    bool kept; /* registered to be freed at the thread's exit */
} yf_tbufs;
void *yf_tbuf(yf_tbufs *t, int slot, size_t bytes);
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

/* ---- files --------------------------------------------------------------
 * Every reader of outside input opens through yf_open_regular: a FIFO, a
 * device or a directory is refused at once (the open does not block on a FIFO
 * without a writer), and so is a file larger than the cap for its kind,
 * before anything is read or allocated. */
#define YF_MIB ((uint64_t)1 << 20)
#define YF_MAX_CONFIG_BYTES (1 * YF_MIB)      /* config.json, adapter_config.json, scheduler/rng state, templates */
#define YF_MAX_INDEX_BYTES (64 * YF_MIB)      /* *.safetensors.index.json */
#define YF_MAX_STATE_BYTES (256 * YF_MIB)     /* trainer_state.json: log history, a loss per step */
#define YF_MAX_TOKENIZER_BYTES (256 * YF_MIB) /* tokenizer.model (Yuan 2.0's: 2 MB) */
#define YF_MAX_TEXT_BYTES (2048 * YF_MIB)     /* data sets, corpora, predictions: read whole into memory */

/* Opens path read-only (close-on-exec) after checking that it is a regular
 * file of at most max_bytes; *fd and *size on success. */
int yf_open_regular(const char *path, uint64_t max_bytes, int *fd, uint64_t *size);
/* Reads a whole regular file of at most max_bytes; *out is NUL-terminated
 * and owned by the caller. */
int yf_read_file_max(const char *path, uint64_t max_bytes, char **out, size_t *len);
/* yf_read_file_max with the largest cap, YF_MAX_TEXT_BYTES. */
int yf_read_file(const char *path, char **out, size_t *len);
/* Writes data to path atomically: a temporary file beside it (created with
 * O_EXCL | O_NOFOLLOW), fsync, rename, fsync of the directory; every step's
 * error is reported and leaves path as it was. */
int yf_write_file_atomic(const char *path, const void *data, size_t len);
/* Opens the temporary file for path; yf_atomic_commit checks the writes,
 * fsyncs, closes, renames it over path and fsyncs the directory.
 * yf_atomic_abort closes and removes the temporary file. */
typedef struct yf_atomic_file {
    FILE *f;
    char *path;
    char *tmp;
} yf_atomic_file;
int yf_atomic_open(yf_atomic_file *af, const char *path);
int yf_atomic_commit(yf_atomic_file *af);
void yf_atomic_abort(yf_atomic_file *af);
/* fsync of a directory, so that a rename or a new entry in it survives a
 * crash of the machine (message names dir). */
int yf_fsync_dir(const char *dir);
/* Copies a regular file of at most max_bytes, writing the copy atomically. */
int yf_copy_file(const char *from, const char *to, uint64_t max_bytes);
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
