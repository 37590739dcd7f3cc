#include "base/util.h"

#include <sys/mman.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- errors ------------------------------------------------------------- */

static _Thread_local char g_err[1024];

int yf_errorf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return -1;
}

const char *yf_last_error(void) { return g_err[0] ? g_err : "unknown error"; }
void yf_clear_error(void) { g_err[0] = 0; }

void yf_die_check(const char *expr, const char *file, int line) {
    fprintf(stderr, "yuanft: internal check failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

/* ---- memory ------------------------------------------------------------- */

static void oom(size_t n) {
    fprintf(stderr, "yuanft: out of memory allocating %zu bytes\n", n);
    exit(3);
}

void *yf_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *yf_calloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) oom(n * sz);
    return p;
}

void *yf_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

void *yf_aligned_alloc(size_t n) {
    size_t sz = (n + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, sz ? sz : 64);
    if (!p) oom(n);
    memset(p, 0, sz);
    return p;
}

/* yf_tbuf: one key for every user; its value, the thread's list of
 * yf_tbufs, is freed by the key's destructor at the thread's exit (threads
 * that live as long as the process never get there). */
enum { TBUF_USERS = 8 };
static _Thread_local yf_tbufs *t_tbufs[TBUF_USERS];
static pthread_key_t g_tbuf_key;
static pthread_once_t g_tbuf_once = PTHREAD_ONCE_INIT;

static void tbufs_release(void *arg) {
    yf_tbufs **reg = arg;
    for (int u = 0; u < TBUF_USERS && reg[u]; u++) {
        yf_tbufs *t = reg[u];
        for (int i = 0; i < YF_TBUF_SLOTS; i++) free(t->p[i]), t->p[i] = NULL, t->n[i] = 0;
        t->kept = false;
        reg[u] = NULL;
    }
}

static void tbuf_key(void) { pthread_key_create(&g_tbuf_key, tbufs_release); }

void *yf_tbuf(yf_tbufs *t, int slot, size_t bytes) {
    YF_CHECK(slot >= 0 && slot < YF_TBUF_SLOTS);
    if (!t->kept) {
        pthread_once(&g_tbuf_once, tbuf_key);
        int u = 0;
        while (u < TBUF_USERS && t_tbufs[u]) u++;
        YF_CHECK(u < TBUF_USERS);
        t_tbufs[u] = t;
        pthread_setspecific(g_tbuf_key, t_tbufs);
        t->kept = true;
    }
    if (t->n[slot] < bytes) {
        free(t->p[slot]);
        t->p[slot] = yf_aligned_alloc(bytes);
        t->n[slot] = bytes;
    }
    return t->p[slot];
}

char *yf_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = yf_malloc(n);
    memcpy(d, s, n);
    return d;
}

void yf_release_resident(const void *p, size_t bytes) {
#ifdef MADV_PAGEOUT
    long psz = sysconf(_SC_PAGE_SIZE);
    if (psz <= 0 || !p) return;
    uintptr_t lo = ((uintptr_t)p + (uintptr_t)psz - 1) & ~(uintptr_t)(psz - 1);
    uintptr_t hi = ((uintptr_t)p + bytes) & ~(uintptr_t)(psz - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_PAGEOUT); /* advice only: failure changes nothing */
#else
    (void)p, (void)bytes;
#endif
}

void yf_prefault(const void *p, size_t bytes) {
    long psz = sysconf(_SC_PAGE_SIZE);
    if (psz <= 0 || !p || bytes == 0) return;
    uintptr_t lo = (uintptr_t)p & ~(uintptr_t)(psz - 1), hi = (uintptr_t)p + bytes;
    (void)madvise((void *)lo, hi - lo, 22 /* MADV_POPULATE_READ, Linux 5.14 */); /* older kernels: EINVAL, no harm */
}

size_t yf_peak_rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %zu kB", &kb) == 1) break;
    fclose(f);
    return kb / 1024;
}

/* ---- files -------------------------------------------------------------- */

int yf_open_regular(const char *path, uint64_t max_bytes, int *fd, uint64_t *size) {
    *fd = -1;
    /* O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever */
    int f = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (f < 0) return yf_errorf("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(f, &st) != 0) {
        int e = errno;
        close(f);
        return yf_errorf("%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(f);
        return yf_errorf("%s: not a regular file (%s): give the path of a file", path,
                         S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO" :
                         S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device" : "a socket or other special file");
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(f);
        return yf_errorf("%s: %llu bytes is more than such a file can hold (limit %llu MiB): is it the right file?", path,
                         (unsigned long long)st.st_size, (unsigned long long)(max_bytes >> 20));
    }
    int fl = fcntl(f, F_GETFL);
    if (fl >= 0) (void)fcntl(f, F_SETFL, fl & ~O_NONBLOCK);
    *fd = f;
    *size = (uint64_t)st.st_size;
    return 0;
}

int yf_read_file_max(const char *path, uint64_t max_bytes, char **out, size_t *len) {
    int fd;
    uint64_t size;
    if (yf_open_regular(path, max_bytes, &fd, &size)) return -1;
    /* the size from fstat sizes the buffer; a file that grows meanwhile is
     * read up to the cap and no further */
    size_t cap = (size_t)size + 1, n = 0;
    char *buf = yf_malloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            if (n >= max_bytes) {
                free(buf);
                close(fd);
                return yf_errorf("%s: grew past the %llu MiB limit while being read", path,
                                 (unsigned long long)(max_bytes >> 20));
            }
            cap = cap * 2 < max_bytes + 1 ? cap * 2 : (size_t)max_bytes + 1;
            buf = yf_realloc(buf, cap);
        }
        ssize_t got = read(fd, buf + n, cap - n - 1);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return yf_errorf("%s: read error: %s", path, strerror(e));
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return 0;
}

int yf_read_file(const char *path, char **out, size_t *len) { return yf_read_file_max(path, YF_MAX_TEXT_BYTES, out, len); }

int yf_fsync_dir(const char *dir) {
    int fd = open(dir[0] ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return yf_errorf("%s: cannot open directory to sync it: %s", dir, strerror(errno));
    int rc = 0;
    /* EINVAL: a file system that cannot sync directories (nothing to do) */
    if (fsync(fd) != 0 && errno != EINVAL) rc = yf_errorf("%s: fsync of the directory failed: %s", dir, strerror(errno));
    close(fd);
    return rc;
}

/* The directory holding path ("." for a bare name), malloc'd. */
static char *parent_dir(const char *path) {
    const char *sl = strrchr(path, '/');
    if (!sl) return yf_strdup(".");
    if (sl == path) return yf_strdup("/");
    char *d = yf_malloc((size_t)(sl - path) + 1);
    memcpy(d, path, (size_t)(sl - path));
    d[sl - path] = 0;
    return d;
}

int yf_atomic_open(yf_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 32;
    char *tmp = yf_malloc(n);
    snprintf(tmp, n, "%s.tmp.%d", path, (int)getpid());
    /* O_EXCL | O_NOFOLLOW: never write through a link someone left at that
     * name. A leftover of ours (a process that had this pid and died) is
     * removed once and the create tried again. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST && unlink(tmp) == 0)
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        int e = errno;
        if (fd >= 0) close(fd), unlink(tmp);
        free(tmp);
        return yf_errorf("%s: cannot create: %s", path, strerror(e));
    }
    af->f = f;
    af->path = yf_strdup(path);
    af->tmp = tmp;
    return 0;
}

int yf_atomic_commit(yf_atomic_file *af) {
    int rc = 0;
    if (fflush(af->f) != 0 || ferror(af->f)) rc = yf_errorf("%s: write failed: %s (disk full?)", af->path, strerror(errno));
    if (rc == 0 && fsync(fileno(af->f)) != 0) rc = yf_errorf("%s: fsync failed: %s", af->path, strerror(errno));
    if (fclose(af->f) != 0 && rc == 0) rc = yf_errorf("%s: close failed: %s", af->path, strerror(errno));
    if (rc == 0 && rename(af->tmp, af->path) != 0) rc = yf_errorf("%s: rename failed: %s", af->path, strerror(errno));
    if (rc != 0) unlink(af->tmp);
    if (rc == 0) {
        char *dir = parent_dir(af->path);
        rc = yf_fsync_dir(dir);
        free(dir);
    }
    free(af->path);
    free(af->tmp);
    memset(af, 0, sizeof *af);
    return rc;
}

void yf_atomic_abort(yf_atomic_file *af) {
    if (af->f) fclose(af->f);
    if (af->tmp) unlink(af->tmp);
    free(af->path);
    free(af->tmp);
    memset(af, 0, sizeof *af);
}

int yf_write_file_atomic(const char *path, const void *data, size_t len) {
    yf_atomic_file af;
    if (yf_atomic_open(&af, path)) return -1;
    if (len && fwrite(data, 1, len, af.f) != len) {
        int e = errno;
        yf_atomic_abort(&af);
        return yf_errorf("%s: write failed: %s (disk full?)", path, strerror(e));
    }
    return yf_atomic_commit(&af);
}

int yf_copy_file(const char *from, const char *to, uint64_t max_bytes) {
    char *buf = NULL;
    size_t len = 0;
    if (yf_read_file_max(from, max_bytes, &buf, &len)) return -1;
    int rc = yf_write_file_atomic(to, buf, len);
    free(buf);
    return rc;
}

bool yf_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool yf_dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int yf_mkdir_p(const char *path) {
    char *p = yf_strdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            return yf_errorf("%s: cannot create directory: %s", path, strerror(e));
        }
        *s = '/';
    }
    int rc = 0;
    if (mkdir(p, 0755) != 0 && errno != EEXIST) rc = yf_errorf("%s: cannot create directory: %s", path, strerror(errno));
    free(p);
    return rc;
}

char *yf_path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = yf_malloc(n);
    if (dir[0] && dir[strlen(dir) - 1] == '/')
        snprintf(s, n, "%s%s", dir, name);
    else
        snprintf(s, n, "%s/%s", dir, name);
    return s;
}

/* ---- numbers ------------------------------------------------------------ */

float yf_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    union { uint32_t u; float f; } v;
    if (exp == 0) {
        float f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    if (exp == 31)
        v.u = sign | 0x7f800000u | (man << 13);
    else
        v.u = sign | ((exp + 112) << 23) | (man << 13);
    return v.f;
}

uint16_t yf_f32_to_f16(float f) {
    union { float f; uint32_t u; } v = {f};
    uint32_t sign = (v.u >> 16) & 0x8000, a = v.u & 0x7fffffff;
    if (a > 0x7f800000) return (uint16_t)(sign | 0x7e00);
    if (a >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* overflow → inf */
    if (a < 0x38800000) {                                    /* subnormal or zero */
        float m = fabsf(f) * 16777216.0f;                   /* 2^24 */
        return (uint16_t)(sign | (uint32_t)nearbyintf(m));
    }
    uint32_t r = a + 0xfff + ((a >> 13) & 1) - (112u << 23);
    return (uint16_t)(sign | (r >> 13));
}

double yf_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- random numbers ----------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void yf_rng_seed(yf_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t yf_rng_u64(yf_rng *r) {
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double yf_rng_uniform(yf_rng *r) { return (yf_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

float yf_rng_normal(yf_rng *r) {
    double u1 = yf_rng_uniform(r), u2 = yf_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
