/* Bounded cost for hostile inputs that belong to no one format's tests:
 * file kinds and sizes (yf_open_regular), vocabulary maps, the CLI's exit
 * codes. Each `bad` test runs under yt_limit: a hang or a gigabyte
 * allocation is a failure, not a slow pass. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "formats/config.h"
#include "formats/safetensors.h"
#include "formats/vocab_map.h"
#include "task/data.h"
#include "tokenizer/tokenizer.h"

static const char *tmp(const char *name) {
    static char p[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", yt_tmpdir(), name);
    return p[k];
}

TEST(limits_bad_fifo_and_device) {
    yt_limit(512, 10);
    const char *fifo = tmp("fifo");
    CHECK(mkfifo(fifo, 0600) == 0, "mkfifo: %s", strerror(errno));
    yf_config cfg;
    yf_tokenizer *tok = NULL;
    yf_table tab;
    yf_table_init(&tab);
    /* a FIFO without a writer: the open must not block, the readers refuse it */
    CHECK(yf_config_load(fifo, &cfg) == -1 && strstr(yf_last_error(), "a FIFO"), "%s", yf_last_error());
    CHECK(yf_tokenizer_load(fifo, &tok) == -1 && strstr(yf_last_error(), "not a regular file"), "%s", yf_last_error());
    CHECK(yf_st_load(fifo, &tab) == -1 && strstr(yf_last_error(), "not a regular file"), "%s", yf_last_error());
    /* /dev/zero would be an endless file */
    char *buf = NULL;
    CHECK(yf_read_file("/dev/zero", &buf, NULL) == -1 && strstr(yf_last_error(), "a device"), "%s", yf_last_error());
    CHECK(yf_config_load(yt_tmpdir(), &cfg) == -1 && strstr(yf_last_error(), "a directory"), "%s", yf_last_error());
    /* the CLI: exit 1 and one line naming the file */
    char out[4096];
    int rc = yt_sh(out, sizeof out, "%s %s data check --data %s", yt_limit_sh(512, 10), yt_cli(), fifo);
    CHECK(rc == 1 && strstr(out, "fifo: not a regular file") && !strchr(strchr(out, '\n') + 1, '\n'), "exit %d: %s", rc,
          out);
    rc = yt_sh(out, sizeof out, "echo 'x' | (%s %s tokenize --tokenizer /dev/zero)", yt_limit_sh(512, 10), yt_cli());
    CHECK(rc == 1 && strstr(out, "/dev/zero: not a regular file"), "exit %d: %s", rc, out);
}

TEST(limits_bad_size_caps) {
    yt_limit(512, 10);
    /* a 2 MiB config.json (sparse: nothing is written) is refused unread */
    const char *big = tmp("config.json");
    FILE *f = fopen(big, "w");
    CHECK(f && ftruncate(fileno(f), 2 << 20) == 0);
    if (f) fclose(f);
    yf_config cfg;
    CHECK(yf_config_load(big, &cfg) == -1 && strstr(yf_last_error(), "limit 1 MiB"), "%s", yf_last_error());
    /* a tokenizer of 300 MiB likewise */
    const char *tk = tmp("tokenizer.model");
    f = fopen(tk, "w");
    CHECK(f && ftruncate(fileno(f), (off_t)300 << 20) == 0);
    if (f) fclose(f);
    yf_tokenizer *tok = NULL;
    CHECK(yf_tokenizer_load(tk, &tok) == -1 && strstr(yf_last_error(), "limit 256 MiB"), "%s", yf_last_error());
}

/* fuzz_tokenizer_model's crash (fuzz/crashes, 2026-12-07): a piece "W\0m"
 * loaded, and id_piece() then named a piece that piece_id() did not know */
TEST(limits_bad_tokenizer_piece_with_nul) {
    static const unsigned char model[] = {
        0x0a, 0x0e, 0x0a, 0x05, '<', 'u', 'n', 'k', '>', 0x15, 0, 0, 0, 0, 0x18, 0x02, /* <unk>, UNKNOWN */
        0x0a, 0x0c, 0x0a, 0x03, 'W', 0x00, 'm', 0x15, 0, 0, 0, 0, 0x18, 0x01,           /* "W\0m", NORMAL */
    };
    const char *tk = tmp("nul.model");
    FILE *f = fopen(tk, "wb");
    CHECK(f && fwrite(model, 1, sizeof model, f) == sizeof model);
    if (f) fclose(f);
    yf_tokenizer *tok = NULL;
    CHECK(yf_tokenizer_load(tk, &tok) == -1 && strstr(yf_last_error(), "NUL byte"), "%s", yf_last_error());
    if (tok) yf_tokenizer_free(tok);
}

static void write_map(const char *dir, const int64_t *ids, int64_t n) {
    CHECK(yf_mkdir_p(dir) == 0);
    char *p = yf_path_join(dir, YF_VOCAB_MAP_FILE);
    yf_tensor t = {.name = "orig_ids", .dtype = YF_I64, .ndim = 1, .shape = {n}, .data = (void *)ids,
                   .nbytes = (size_t)n * 8};
    CHECK(yf_st_save(p, &t, 1, NULL) == 0, "%s", yf_last_error());
    free(p);
}

TEST(limits_bad_vocab_map_ids) {
    yt_limit(512, 10);
    const char *d = tmp("vm");
    /* ids as large as a file may name: the lookup's memory follows the
     * map's size (3 ids), not the largest id (2^31: 16 GiB as a table) */
    int64_t big[3] = {0, 7, ((int64_t)1 << 31) - 1};
    write_map(d, big, 3);
    yf_vocab_map vm;
    CHECK(yf_vocab_map_load(d, 0, &vm) == 0, "%s", yf_last_error());
    CHECK(yf_vocab_to_model(&vm, 7) == 1 && yf_vocab_to_model(&vm, big[2]) == 2 && yf_vocab_to_model(&vm, 8) == 0 &&
          yf_vocab_to_orig(&vm, 2) == big[2]);
    yf_vocab_map_free(&vm);
    /* against a tokenizer of 135,040 ids that last id is refused */
    CHECK(yf_vocab_map_load(d, 135040, &vm) == -1 && strstr(yf_last_error(), "orig_ids[2]"), "%s", yf_last_error());
    int64_t dup[3] = {0, 5, 5}, norow0[2] = {3, 4}, neg[2] = {0, -1};
    write_map(d, dup, 3);
    CHECK(yf_vocab_map_load(d, 0, &vm) == -1 && strstr(yf_last_error(), "appears twice"), "%s", yf_last_error());
    write_map(d, norow0, 2);
    CHECK(yf_vocab_map_load(d, 0, &vm) == -1 && strstr(yf_last_error(), "row 0 must be"), "%s", yf_last_error());
    write_map(d, neg, 2);
    CHECK(yf_vocab_map_load(d, 0, &vm) == -1 && strstr(yf_last_error(), "orig_ids[1]"), "%s", yf_last_error());
}

/* A pre-tokenised data set of [10^12, 0] rows takes no bytes in the file:
 * its row count must not size the examples array (40 TB). */
TEST(limits_bad_dataset_empty_rows) {
    yt_limit(512, 10);
    const char *p = tmp("rows.safetensors");
    int64_t dummy = 0;
    yf_tensor ts[2] = {{.name = "input_ids", .dtype = YF_I64, .ndim = 2, .shape = {1000000000000LL, 0}, .data = &dummy},
                       {.name = "labels", .dtype = YF_I64, .ndim = 2, .shape = {1000000000000LL, 0}, .data = &dummy}};
    CHECK(yf_st_save(p, ts, 2, NULL) == 0, "%s", yf_last_error());
    yf_dataset ds;
    CHECK(yf_dataset_load(p, 3, &ds) == -1 && strstr(yf_last_error(), "rows without tokens"), "%s", yf_last_error());
}
