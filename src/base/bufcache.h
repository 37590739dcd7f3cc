/* bufcache: recycles the big per-call buffers of the model (workspaces,
 * activations, logits chunks). A training step allocates and frees the same
 * few hundred MB every call; fresh pages cost a page fault and zeroing each
 * (11% of a 2-layer 2B-width LoRA step, more on small models), so freed
 * blocks are kept and handed out again. The cache never holds more bytes
 * than were in use at once at the peak so far (what the process needed
 * anyway), and at most YF_BUF_SLOTS blocks. Thread-safe. */
#ifndef YF_BUFCACHE_H
#define YF_BUFCACHE_H

#include <stddef.h>

#define YF_BUF_SLOTS 64

/* A 64-byte aligned block of at least n bytes. Its contents are NOT zeroed
 * (a recycled block holds old data); aborts when out of memory. */
void *yf_buf_get(size_t n);
/* Gives a block from yf_buf_get back (NULL is ignored). */
void yf_buf_put(void *p);
/* Frees every cached block (tests; memory pressure). */
void yf_buf_trim(void);

#endif
