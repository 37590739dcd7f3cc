/* The toy model the trainer tests train (test_toy_util.h). */
#include "test_toy_util.h"

#include "harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"

int64_t toy_ntok(int64_t i) { return 1 + i % 4; }
double toy_x(int64_t i, int64_t j) { return sin((double)(i + j)); }
double toy_y(int64_t i, int64_t j) { return 0.7 * toy_x(i, j) - 0.2 + 0.1 * cos(3.0 * (double)(i * 7 + j)); }

int64_t toy_count(void *ctx, const int64_t *rows, int64_t n) {
    (void)ctx;
    int64_t t = 0;
    for (int64_t k = 0; k < n; k++) t += toy_ntok(rows[k]);
    return t;
}

int toy_fb(void *ctx, const int64_t *rows, int64_t n, float scale, yf_rng *rng, double *loss_sum, int64_t *ntok,
                  int64_t *n_input) {
    toy *m = ctx;
    double ls = 0;
    int64_t nt = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t i = rows[k];
        if (m->nseen < 512) m->seen[m->nseen++] = i;
        for (int64_t j = 0; j < toy_ntok(i); j++) {
            double x = toy_x(i, j);
            if (m->dropout) x *= 0.9 + 0.2 * yf_rng_uniform(rng);
            double r = m->w[0] * x + m->w[1] - toy_y(i, j);
            ls += 0.5 * r * r;
            m->g[0] += (float)(scale * r * x);
            m->g[1] += (float)(scale * r);
            nt++;
        }
    }
    *loss_sum = ls;
    *ntok = nt;
    *n_input = 4 * n;
    return 0;
}

int toy_save(void *ctx, const char *dir) {
    toy *m = ctx;
    int64_t shape[1] = {2};
    yf_tensor t = {.name = "w", .dtype = YF_F32, .ndim = 1, .shape = {2}, .data = m->w, .nbytes = 8};
    (void)shape;
    char *p = yf_path_join(dir, "toy.safetensors");
    int rc = yf_st_save(p, &t, 1, NULL);
    free(p);
    return rc;
}

int toy_load(toy *m, const char *dir) {
    yf_table tab;
    yf_table_init(&tab);
    char *p = yf_path_join(dir, "toy.safetensors");
    int rc = yf_st_load(p, &tab);
    free(p);
    if (rc == 0) memcpy(m->w, yf_table_find(&tab, "w")->data, 8);
    yf_table_free(&tab);
    return rc;
}

void toy_init(toy *m, yf_param *p, yf_param_list *pl, yf_train_hooks *h) {
    memset(m, 0, sizeof *m);
    m->w[0] = 0.1f, m->w[1] = 0.3f;
    memset(p, 0, sizeof *p);
    p->name = "toy.weight";
    p->w = m->w, p->g = m->g, p->numel = 2, p->ndim = 1, p->shape[0] = 2;
    *pl = (yf_param_list){p, 1};
    *h = (yf_train_hooks){.ctx = m, .n_examples = TOY_N, .count_tokens = toy_count, .forward_backward = toy_fb, .save = toy_save};
}

yf_train_args toy_args(const char *outdir, FILE *out) {
    yf_train_args a = yf_train_args_defaults();
    a.lr = 0.05;
    a.logging_steps = 1;
    a.save_strategy = YF_SAVE_NO;
    a.output_dir = outdir;
    a.out = out;
    a.progress = 0;
    return a;
}

/* Reads a whole file (test helper). */
char *slurp(const char *path) {
    char *s = NULL;
    if (yf_read_file(path, &s, NULL)) return NULL;
    return s;
}

char *sub(const char *name) {
    static char buf[8][700];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 700, "%s/%s", yt_tmpdir(), name);
    return b;
}
