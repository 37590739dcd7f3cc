/* zip: a read-only view of a zip archive held in memory (an mmapped file):
 * the central directory (zip64 records included), stored entries as pointers
 * into the mapping, deflated ones inflated on request. Enough for the
 * archives torch.save writes; no encryption, no multi-disk archives. */
#ifndef YF_ZIP_H
#define YF_ZIP_H

#include "base/util.h"

typedef struct yf_zip_entry {
    char *name;
    int method;          /* 0 stored, 8 deflated */
    uint32_t crc;
    uint64_t csize;      /* bytes in the archive */
    uint64_t usize;      /* bytes once inflated */
    uint64_t data_off;   /* file offset of the entry's bytes (checked: + csize fits) */
} yf_zip_entry;

typedef struct yf_zip {
    const char *path;    /* for messages; not owned */
    const uint8_t *base; /* the whole archive; not owned */
    uint64_t size;
    yf_zip_entry *e;     /* [n] */
    int n;
    int *by_name;        /* [n] entry indices sorted by name (yf_zip_find) */
    /* bytes that inflating deflated entries may still produce: a bomb (a few
     * KB claiming gigabytes) is refused before anything is allocated */
    uint64_t inflate_left;
} yf_zip;

/* Parses the central directory of the archive at base[0, size). Every offset
 * and size is checked against the archive; errors name path. The inflate
 * budget starts at YF_ZIP_INFLATE_RATIO times the archive's size plus 1 MiB. */
#define YF_ZIP_INFLATE_RATIO 16
int yf_zip_open(yf_zip *z, const char *path, const uint8_t *base, uint64_t size);
void yf_zip_close(yf_zip *z);
/* The entry named name (O(log n)), NULL if none. */
const yf_zip_entry *yf_zip_find(const yf_zip *z, const char *name);
/* The entry's bytes: a pointer into the archive for stored entries (*owned =
 * NULL), a malloc'd inflated copy for deflated ones (*owned = it; free it).
 * check_crc: verify the CRC-32 (reads every byte: use for small entries).
 * A deflated entry's size is taken from z's inflate budget first. */
int yf_zip_data(yf_zip *z, const yf_zip_entry *e, bool check_crc, const uint8_t **data, void **owned);

#endif
