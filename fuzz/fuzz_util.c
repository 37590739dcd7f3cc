#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int g_fd[4] = {-1, -1, -1, -1};

const char *yz_file(int slot, const uint8_t *data, size_t n) {
    static char path[4][64];
    if (g_fd[slot] < 0) {
        g_fd[slot] = memfd_create("yz", MFD_CLOEXEC);
        if (g_fd[slot] < 0) perror("memfd_create"), abort();
        snprintf(path[slot], sizeof path[slot], "/proc/self/fd/%d", g_fd[slot]);
    }
    if (ftruncate(g_fd[slot], 0) != 0 || pwrite(g_fd[slot], data, n, 0) != (ssize_t)n) perror("memfd write"), abort();
    return path[slot];
}

const char *yz_dir(void) {
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/yuanft-fuzz.XXXXXX");
        if (!mkdtemp(dir)) perror("mkdtemp"), abort();
    }
    return dir;
}

void yz_write(const char *dir, const char *name, const uint8_t *data, size_t n) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) perror(path), abort();
}

void yz_split(const uint8_t *data, size_t n, const uint8_t **a, size_t *na, const uint8_t **b, size_t *nb) {
    static const char sep[] = "\n--yz--\n";
    const uint8_t *hit = n >= 8 ? memmem(data, n, sep, 8) : NULL;
    *a = data;
    *na = hit ? (size_t)(hit - data) : n;
    *b = hit ? hit + 8 : data + n;
    *nb = hit ? n - *na - 8 : 0;
}
