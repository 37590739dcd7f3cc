/* tok_bench: times yf_tokenizer_encode over the sentences of Resume NER
 * .char.bmes files (one char + tag a line, blank line between sentences).
 * usage: tok_bench MODEL REPS FILE...   prints "best_seconds sentences chars" */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: tok_bench MODEL REPS FILE...\n");
        return 2;
    }
    size_t cap = 1024, n = 0, nchars = 0;
    char **sent = yf_malloc(cap * sizeof *sent);
    size_t *slen = yf_malloc(cap * sizeof *slen);
    for (int f = 3; f < argc; f++) {
        char *buf;
        size_t len;
        if (yf_read_file(argv[f], &buf, &len)) {
            fprintf(stderr, "tok_bench: %s\n", yf_last_error());
            return 1;
        }
        char *cur = yf_malloc(len + 1);
        size_t cl = 0;
        for (char *line = buf; line < buf + len;) {
            char *nl = memchr(line, '\n', (size_t)(buf + len - line));
            char *end = nl ? nl : buf + len;
            if (end == line || (end == line + 1 && *line == '\r')) {
                if (cl) {
                    if (n == cap) {
                        cap *= 2;
                        sent = yf_realloc(sent, cap * sizeof *sent);
                        slen = yf_realloc(slen, cap * sizeof *slen);
                    }
                    sent[n] = yf_malloc(cl);
                    memcpy(sent[n], cur, cl);
                    slen[n++] = cl;
                    cl = 0;
                }
            } else {
                char *sp = end;
                while (sp > line && sp[-1] != ' ') sp--;
                if (sp > line) sp--; /* the char is everything before the last space */
                else sp = end;
                memcpy(cur + cl, line, (size_t)(sp - line));
                cl += (size_t)(sp - line);
                for (char *c = line; c < sp; c++) nchars += ((unsigned char)*c & 0xC0) != 0x80;
            }
            line = end + 1;
        }
        if (cl) {
            if (n == cap) {
                cap *= 2;
                sent = yf_realloc(sent, cap * sizeof *sent);
                slen = yf_realloc(slen, cap * sizeof *slen);
            }
            sent[n] = yf_malloc(cl);
            memcpy(sent[n], cur, cl);
            slen[n++] = cl;
        }
        free(cur);
        free(buf);
    }
    yf_tokenizer *tok;
    if (yf_tokenizer_load(argv[1], &tok)) {
        fprintf(stderr, "tok_bench: %s\n", yf_last_error());
        return 1;
    }
    int reps = atoi(argv[2]);
    double best = 1e30;
    size_t total = 0;
    for (int r = 0; r < (reps > 0 ? reps : 1); r++) {
        double t0 = yf_time();
        total = 0;
        for (size_t i = 0; i < n; i++) {
            int64_t *ids;
            size_t m;
            if (yf_tokenizer_encode(tok, sent[i], slen[i], &ids, &m)) return 1;
            total += m;
            free(ids);
        }
        double t = yf_time() - t0;
        if (t < best) best = t;
    }
    printf("%.6f %zu %zu %zu\n", best, n, nchars, total);
    for (size_t i = 0; i < n; i++) free(sent[i]);
    free(sent);
    free(slen);
    yf_tokenizer_free(tok);
    return 0;
}
