/* The pickle reader, through a zip: the fuzzer's bytes become
 * archive/data.pkl of a torch.save archive whose storages archive/data/0 ..
 * archive/data/63 (80 KiB each, enough for any tensor of the golden tiny
 * model) are always present, then yf_torch_load runs on it and every tensor
 * it returns is read. The storages are written to the file once; each run
 * rewrites only the pickle's entry and the central directory after them. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "formats/torch_pickle.h"
#include "fuzz_util.h"

#define NSTORE 64
#define STORE_BYTES 81920

typedef struct { uint8_t *b; size_t n, cap; } buf;

static void put(buf *o, const void *p, size_t n) {
    if (o->n + n > o->cap) {
        while (o->n + n > o->cap) o->cap = o->cap ? 2 * o->cap : 1 << 16;
        o->b = realloc(o->b, o->cap);
        if (!o->b) abort();
    }
    memcpy(o->b + o->n, p, n);
    o->n += n;
}
static void u16(buf *o, unsigned v) { uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)}; put(o, b, 2); }
static void u32(buf *o, uint32_t v) { uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)}; put(o, b, 4); }

typedef struct { char name[64]; uint32_t crc, size, off; } ent;

static void local(buf *o, ent *e, const char *name, const uint8_t *d, uint32_t n) {
    snprintf(e->name, sizeof e->name, "%s", name);
    e->crc = (uint32_t)crc32(0, d, n);
    e->size = n;
    e->off = (uint32_t)o->n;
    u32(o, 0x04034b50u), u16(o, 20), u16(o, 0), u16(o, 0), u16(o, 0), u16(o, 0);
    u32(o, e->crc), u32(o, n), u32(o, n), u16(o, (unsigned)strlen(name)), u16(o, 0);
    put(o, name, strlen(name));
    put(o, d, n);
}

static ent g_ent[NSTORE + 1];
static buf g_head;   /* the storages' local entries */
static const char *g_path;
static int g_fd;

static void setup(void) {
    uint8_t *zeros = calloc(1, STORE_BYTES);
    for (int i = 0; i < NSTORE; i++) {
        char name[64];
        snprintf(name, sizeof name, "archive/data/%d", i);
        local(&g_head, &g_ent[i], name, zeros, STORE_BYTES);
    }
    free(zeros);
    g_path = yz_file(0, g_head.b, g_head.n);
    if (sscanf(g_path, "/proc/self/fd/%d", &g_fd) != 1) abort();
}

/* [the pickle's local entry][central directory of all entries], written
 * after the storages */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (!g_path) setup();
    if (n > 1 << 20) return 0;
    size_t base = g_head.n;
    buf t = {0};
    local(&t, &g_ent[NSTORE], "archive/data.pkl", data, (uint32_t)n);
    g_ent[NSTORE].off += (uint32_t)base; /* local() counts from the start of t */
    uint32_t start = (uint32_t)(base + t.n), cd0 = (uint32_t)t.n;
    for (int i = 0; i <= NSTORE; i++) {
        u32(&t, 0x02014b50u), u16(&t, 20), u16(&t, 20), u16(&t, 0), u16(&t, 0), u16(&t, 0), u16(&t, 0);
        u32(&t, g_ent[i].crc), u32(&t, g_ent[i].size), u32(&t, g_ent[i].size);
        u16(&t, (unsigned)strlen(g_ent[i].name));
        u16(&t, 0), u16(&t, 0), u16(&t, 0), u16(&t, 0), u32(&t, 0), u32(&t, g_ent[i].off);
        put(&t, g_ent[i].name, strlen(g_ent[i].name));
    }
    uint32_t cdsize = (uint32_t)t.n - cd0;
    u32(&t, 0x06054b50u), u16(&t, 0), u16(&t, 0), u16(&t, NSTORE + 1), u16(&t, NSTORE + 1);
    u32(&t, cdsize), u32(&t, start), u16(&t, 0);
    if (ftruncate(g_fd, (off_t)base) != 0 || pwrite(g_fd, t.b, t.n, (off_t)base) != (ssize_t)t.n) abort();
    free(t.b);

    yf_table tab;
    yf_table_init(&tab);
    if (yf_torch_load(g_path, &tab) == 0) {
        volatile uint8_t sink = 0;
        for (int i = 0; i < tab.n; i++) {
            const uint8_t *p = tab.t[i].data;
            for (size_t k = 0; k < tab.t[i].nbytes; k++) sink ^= p[k];
        }
    }
    yf_table_free(&tab);
    return 0;
}
