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
} yf_zip;

/* Parses the central directory of the archive at base[0, size). Every offset
 * and size is checked against the archive; errors name path. */
int yf_zip_open(yf_zip *z, const char *path, const uint8_t *base, uint64_t size);
void yf_zip_close(yf_zip *z);
const yf_zip_entry *yf_zip_find(const yf_zip *z, const char *name);
/* The entry's bytes: a pointer into the archive for stored entries (*owned =
 * NULL), a malloc'd inflated copy for deflated ones (*owned = it; free it).
 * check_crc: verify the CRC-32 (reads every byte: use for small entries). */
int yf_zip_data(const yf_zip *z, const yf_zip_entry *e, bool check_crc, const uint8_t **data, void **owned);

#endif
