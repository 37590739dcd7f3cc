/* zip: central-directory reader (APPNOTE.TXT layout), zip64 aware. */
#include "formats/zip.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* Finds the end-of-central-directory record: 22 bytes plus a comment of at
 * most 64 KiB at the very end of the archive. */
static int64_t find_eocd(const uint8_t *b, uint64_t size) {
    if (size < 22) return -1;
    uint64_t lo = size > 22 + 65535 ? size - 22 - 65535 : 0;
    for (uint64_t p = size - 22 + 1; p-- > lo;)
        if (rd32(b + p) == SIG_EOCD && p + 22 + rd16(b + p + 20) == size) return (int64_t)p;
    return -1;
}

/* Reads the zip64 extended-information extra field: the 64-bit values of
 * whichever 32-bit fields were saturated, in this fixed order. */
static int zip64_extra(const uint8_t *ex, uint32_t exlen, uint64_t *usize, uint64_t *csize, uint64_t *off,
                       const char *path, const char *name) {
    bool nu = *usize == 0xFFFFFFFFu, nc = *csize == 0xFFFFFFFFu, no = *off == 0xFFFFFFFFu;
    if (!nu && !nc && !no) return 0;
    for (uint32_t p = 0; p + 4 <= exlen;) {
        uint16_t id = rd16(ex + p), len = rd16(ex + p + 2);
        if (p + 4 + len > exlen) break;
        if (id == 0x0001) {
            const uint8_t *q = ex + p + 4, *end = q + len;
            if (nu) { if (q + 8 > end) goto short_field; *usize = rd64(q); q += 8; }
            if (nc) { if (q + 8 > end) goto short_field; *csize = rd64(q); q += 8; }
            if (no) { if (q + 8 > end) goto short_field; *off = rd64(q); }
            return 0;
        }
        p += 4u + len;
    }
short_field:
    return yf_errorf("%s: corrupt zip: entry %s needs a zip64 extra field, which is missing or short", path, name);
}

static int cmp_name(const void *a, const void *b, void *zp) {
    const yf_zip *z = zp;
    int c = strcmp(z->e[*(const int *)a].name, z->e[*(const int *)b].name);
    return c ? c : (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

int yf_zip_open(yf_zip *z, const char *path, const uint8_t *b, uint64_t size) {
    memset(z, 0, sizeof *z);
    z->path = path;
    z->base = b;
    z->size = size;
    int64_t eocd = find_eocd(b, size);
    if (eocd < 0) return yf_errorf("%s: not a zip archive (no end-of-central-directory record; truncated?)", path);
    uint64_t count = rd16(b + eocd + 10), cd_size = rd32(b + eocd + 12), cd_off = rd32(b + eocd + 16);
    if (rd16(b + eocd + 4) != 0 || rd16(b + eocd + 6) != 0)
        return yf_errorf("%s: multi-disk zip archives are not supported", path);
    /* zip64: a locator just before the EOCD points at the 64-bit record */
    if (eocd >= 20 && rd32(b + eocd - 20) == SIG_LOC64) {
        uint64_t r = rd64(b + eocd - 20 + 8);
        if (r > size || size - r < 56 || rd32(b + r) != SIG_EOCD64)
            return yf_errorf("%s: corrupt zip: zip64 end-of-central-directory record at %llu is missing", path,
                             (unsigned long long)r);
        count = rd64(b + r + 32);
        cd_size = rd64(b + r + 40);
        cd_off = rd64(b + r + 48);
    } else if (count == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
        return yf_errorf("%s: corrupt zip: saturated directory fields but no zip64 locator", path);
    }
    if (cd_off > (uint64_t)eocd || cd_size > (uint64_t)eocd - cd_off)
        return yf_errorf("%s: corrupt zip: central directory [%llu, +%llu) lies outside the archive (truncated?)", path,
                         (unsigned long long)cd_off, (unsigned long long)cd_size);
    /* every central entry takes at least 46 bytes: bounds the allocation */
    if (count > cd_size / 46)
        return yf_errorf("%s: corrupt zip: %llu entries cannot fit a %llu-byte directory", path,
                         (unsigned long long)count, (unsigned long long)cd_size);
    z->e = yf_calloc((size_t)(count ? count : 1), sizeof *z->e);
    const uint8_t *p = b + cd_off, *end = b + cd_off + cd_size;
    for (uint64_t i = 0; i < count; i++) {
        if (end - p < 46 || rd32(p) != SIG_CENTRAL) {
            yf_errorf("%s: corrupt zip: central directory entry %llu is damaged", path, (unsigned long long)i);
            goto fail;
        }
        uint16_t flags = rd16(p + 8), method = rd16(p + 10);
        uint32_t nlen = rd16(p + 28), xlen = rd16(p + 30), clen = rd16(p + 32);
        if ((uint64_t)(end - p - 46) < (uint64_t)nlen + xlen + clen) {
            yf_errorf("%s: corrupt zip: central directory entry %llu runs past the directory", path,
                      (unsigned long long)i);
            goto fail;
        }
        yf_zip_entry *e = &z->e[z->n++];
        e->name = yf_malloc(nlen + 1);
        memcpy(e->name, p + 46, nlen);
        e->name[nlen] = 0;
        e->method = method;
        e->crc = rd32(p + 16);
        e->csize = rd32(p + 20);
        e->usize = rd32(p + 24);
        uint64_t loff = rd32(p + 42);
        if (zip64_extra(p + 46 + nlen, xlen, &e->usize, &e->csize, &loff, path, e->name)) goto fail;
        if (flags & 1) {
            yf_errorf("%s: entry %s is encrypted (not supported)", path, e->name);
            goto fail;
        }
        if (method != 0 && method != 8) {
            yf_errorf("%s: entry %s uses compression method %d (only stored and deflated are supported)", path,
                      e->name, method);
            goto fail;
        }
        if (method == 0 && e->csize != e->usize) {
            yf_errorf("%s: corrupt zip: stored entry %s has sizes %llu and %llu", path, e->name,
                      (unsigned long long)e->csize, (unsigned long long)e->usize);
            goto fail;
        }
        /* the local header repeats the name and has its own extra field
         * (torch pads it so the data starts 64-byte aligned) */
        if (loff > size || size - loff < 30 || rd32(b + loff) != SIG_LOCAL) {
            yf_errorf("%s: corrupt zip: local header of %s at %llu is missing", path, e->name,
                      (unsigned long long)loff);
            goto fail;
        }
        uint64_t doff = loff + 30 + rd16(b + loff + 26) + rd16(b + loff + 28);
        if (doff > size || e->csize > size - doff) {
            yf_errorf("%s: corrupt zip: data of %s [%llu, +%llu) runs past the end of the archive (%llu bytes; "
                      "truncated?)",
                      path, e->name, (unsigned long long)doff, (unsigned long long)e->csize, (unsigned long long)size);
            goto fail;
        }
        e->data_off = doff;
        p += 46 + nlen + xlen + clen;
    }
    z->by_name = yf_malloc((size_t)(z->n ? z->n : 1) * sizeof *z->by_name);
    for (int i = 0; i < z->n; i++) z->by_name[i] = i;
    qsort_r(z->by_name, (size_t)z->n, sizeof *z->by_name, cmp_name, z);
    z->inflate_left = size > (UINT64_MAX - YF_MIB) / YF_ZIP_INFLATE_RATIO ? UINT64_MAX : size * YF_ZIP_INFLATE_RATIO + YF_MIB;
    return 0;
fail:
    yf_zip_close(z);
    return -1;
}

void yf_zip_close(yf_zip *z) {
    for (int i = 0; i < z->n; i++) free(z->e[i].name);
    free(z->e);
    free(z->by_name);
    z->e = NULL;
    z->by_name = NULL;
    z->n = 0;
}

const yf_zip_entry *yf_zip_find(const yf_zip *z, const char *name) {
    /* the first of equal names, as a linear search would find */
    int lo = 0, hi = z->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (strcmp(z->e[z->by_name[mid]].name, name) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo < z->n && strcmp(z->e[z->by_name[lo]].name, name) == 0 ? &z->e[z->by_name[lo]] : NULL;
}

static uint32_t crc_of(const uint8_t *p, uint64_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

int yf_zip_data(yf_zip *z, const yf_zip_entry *e, bool check_crc, const uint8_t **data, void **owned) {
    *data = NULL;
    *owned = NULL;
    const uint8_t *src = z->base + e->data_off;
    if (e->method == 0) {
        if (check_crc && crc_of(src, e->usize) != e->crc)
            return yf_errorf("%s: corrupt zip: CRC mismatch in %s", z->path, e->name);
        *data = src;
        return 0;
    }
    /* deflate cannot expand more than ~1032:1: a larger claim is corrupt and
     * must not drive a huge allocation */
    if (e->usize / 1032 > e->csize + 1)
        return yf_errorf("%s: corrupt zip: %s claims %llu bytes from %llu compressed", z->path, e->name,
                         (unsigned long long)e->usize, (unsigned long long)e->csize);
    if (e->usize > z->inflate_left)
        return yf_errorf("%s: %s inflates to %llu bytes, more than %dx the archive's size allows: a zip bomb, or "
                         "re-save it uncompressed (torch.save does)", z->path, e->name, (unsigned long long)e->usize,
                         YF_ZIP_INFLATE_RATIO);
    z->inflate_left -= e->usize;
    uint8_t *out = yf_aligned_alloc(e->usize ? (size_t)e->usize : 1);
    z_stream s;
    memset(&s, 0, sizeof s);
    if (inflateInit2(&s, -15) != Z_OK) {
        free(out);
        return yf_errorf("%s: zlib initialisation failed", z->path);
    }
    uint64_t in_left = e->csize, out_left = e->usize;
    s.next_in = (Bytef *)src;
    s.next_out = out;
    int zr = Z_OK;
    while (zr == Z_OK) {
        /* zlib counts in uInt: feed at most 1 GiB at a time */
        uInt ain = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
        uInt aout = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;
        s.avail_in = ain;
        s.avail_out = aout;
        zr = inflate(&s, Z_NO_FLUSH);
        in_left -= ain - s.avail_in;
        out_left -= aout - s.avail_out;
        if (zr == Z_OK && ain == s.avail_in && aout == s.avail_out) zr = Z_BUF_ERROR; /* no progress */
    }
    inflateEnd(&s);
    if (zr != Z_STREAM_END || out_left != 0) {
        free(out);
        return yf_errorf("%s: corrupt zip: cannot inflate %s (%s)", z->path, e->name,
                         zr == Z_STREAM_END ? "shorter than its stated size" : "bad deflate data");
    }
    if (crc_of(out, e->usize) != e->crc) {
        free(out);
        return yf_errorf("%s: corrupt zip: CRC mismatch in %s", z->path, e->name);
    }
    *data = out;
    *owned = out;
    return 0;
}
