/* fuzz_util: what the libFuzzer harnesses share: the fuzzer's bytes as a file
 * the readers can open by path (a memfd, so nothing touches the disk), a
 * scratch directory, and a helper that splits one input into two. */
#ifndef YF_FUZZ_UTIL_H
#define YF_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Writes data[0, n) into this process's memfd number `slot` (0..3), truncated
 * to n, and returns a path that opens it ("/proc/self/fd/N"; static). */
const char *yz_file(int slot, const uint8_t *data, size_t n);
/* A directory private to this process (created once; static). */
const char *yz_dir(void);
/* Writes data to dir/name (replacing it); aborts on an I/O error, which is the
 * harness's fault, not the input's. */
void yz_write(const char *dir, const char *name, const uint8_t *data, size_t n);
/* Splits data at the first occurrence of the 8-byte separator "\n--yz--\n":
 * *a = before, *b = after (b empty when there is none). */
void yz_split(const uint8_t *data, size_t n, const uint8_t **a, size_t *na, const uint8_t **b, size_t *nb);

#endif
