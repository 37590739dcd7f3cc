/* yuanft score: forward one batch through a model (and optionally an
 * adapter): logits, mean next-token loss and, with --grads, the gradient of
 * that loss with respect to every adapter tensor (no dropout). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "cli.h"
#include "commands.h"
#include "lora/lora.h"
#include "model/model.h"
#include "formats/safetensors.h"
#include "session.h"

static int read_batch(const char *path, yf_table *tab, const int64_t **ids, const int64_t **labels, int64_t *B,
                      int64_t *T) {
    if (yf_st_load(path, tab) != 0) return -1;
    const yf_tensor *i = yf_table_find(tab, "input_ids"), *l = yf_table_find(tab, "labels");
    if (!i) return yf_errorf("%s: no input_ids tensor (I64 [B, T])", path);
    if (i->dtype != YF_I64 || i->ndim != 2)
        return yf_errorf("%s: input_ids must be I64 [B, T] (it is %s with %d dims)", path, yf_dtype_name(i->dtype), i->ndim);
    if (l && (l->dtype != YF_I64 || l->ndim != 2 || l->shape[0] != i->shape[0] || l->shape[1] != i->shape[1]))
        return yf_errorf("%s: labels must be I64 with the shape of input_ids", path);
    *ids = i->data;
    *labels = l ? l->data : NULL;
    *B = i->shape[0];
    *T = i->shape[1];
    return 0;
}

int cmd_score(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *input = NULL, *out = NULL, *grads = NULL;
    bool ckpt = false, f32 = false;
    yc_quant qa = {0};
    const yc_opt opts[] = {
        YC_OPT_MODEL(&model),
        YC_OPT_ADAPTER(&adapter, ""),
        YC_QUANT_OPTS(&qa, ""),
        YC_OPT("input", YC_STR, &input, "the batch: safetensors with input_ids and labels, I64 [B, T]", .meta = "FILE",
               .required = true, .alias = "batch", .alias_warns = true), /* --batch is a count elsewhere */
        YC_OPT_OUTPUT_FILE(&out, "write logits F32 [B, T, V] and loss F32 [1] here"),
        YC_OPT("grads", YC_STR, &grads, "write d loss / d every adapter tensor here (needs --adapter and labels)",
               .meta = "FILE"),
        YC_OPT("gradient-checkpointing", YC_FLAG, &ckpt, "recompute layers in the backward (less memory, same grads)"),
        YC_OPT("force-f32", YC_FLAG, &f32, "convert bf16 weights to f32 at load"),
    };
    int pr = yc_parse("score", "Score one batch: forward it through a model (and adapter) for the logits and the mean\n"
                               "next-token loss, and optionally the adapter gradients.",
                      argc, argv, opts, (int)(sizeof opts / sizeof *opts));
    if (pr) return pr == 1 ? 0 : 2;
    yf_model_opts mo = {.force_f32 = f32};
    if (yc_quant_opts("score", &qa, &mo)) return 2;
    if (grads && !adapter) return yc_usage_error("score", "--grads needs --adapter (the gradients are the adapter's)");
    yf_par_adapt_to_load();
    double t0 = yf_time();
    yf_model *m = NULL;
    yf_lora lo = {0};
    yf_table bt;
    yf_table_init(&bt);
    float *logits = NULL;
    int rc = -1;
    const int64_t *ids = NULL, *labels = NULL;
    int64_t B = 0, T = 0;
    if (read_batch(input, &bt, &ids, &labels, &B, &T) != 0) goto done;
    if (grads && !labels) {
        yf_errorf("%s: --grads needs labels", input);
        goto done;
    }
    if (yf_model_load(model, &mo, &m) != 0) goto done;
    const yf_config *cfg = yf_model_config(m);
    if (adapter && yf_lora_load(adapter, cfg, &lo) != 0) goto done;
    int64_t V = cfg->vocab_size;
    if (out) logits = yf_aligned_alloc((size_t)(B * T * V) * sizeof(float));
    double loss_sum = 0;
    int64_t ntok = 0;
    if (yf_model_forward(m, adapter ? &lo : NULL, ids, labels, B, T, logits, &loss_sum, &ntok) != 0) goto done;
    float loss = ntok ? (float)(loss_sum / (double)ntok) : NAN;
    if (labels) printf("loss %.6f over %lld scored tokens\n", (double)loss, (long long)ntok);
    if (labels && !ntok) fprintf(stderr, "yuanft score: warning: no scored tokens (every label is -100)\n");
    if (out) {
        yf_tensor ts[2] = {{.name = "logits", .dtype = YF_F32, .ndim = 3, .shape = {B, T, V}, .data = logits},
                           {.name = "loss", .dtype = YF_F32, .ndim = 1, .shape = {1}, .data = &loss}};
        ts[0].nbytes = (size_t)(B * T * V) * sizeof(float);
        ts[1].nbytes = sizeof(float);
        if (yf_st_save(out, ts, labels ? 2 : 1, NULL) != 0) goto done;
    }
    if (grads) {
        yf_lora_alloc_grads(&lo);
        yf_lora_zero_grads(&lo);
        yf_backward_opts bo = {.loss_scale = ntok ? 1.0f / (float)ntok : 0.0f, .gradient_checkpointing = ckpt};
        if (yf_model_forward_backward(m, &lo, ids, labels, B, T, &bo, &loss_sum, &ntok) != 0) goto done;
        yf_param_list pl;
        yf_lora_params(&lo, &pl);
        yf_tensor *ts = yf_calloc((size_t)pl.n + 1, sizeof *ts);
        for (int i = 0; i < pl.n; i++) {
            ts[i].name = (char *)pl.p[i].name;
            ts[i].dtype = YF_F32;
            ts[i].ndim = pl.p[i].ndim;
            for (int d = 0; d < pl.p[i].ndim; d++) ts[i].shape[d] = pl.p[i].shape[d];
            ts[i].data = pl.p[i].g;
            ts[i].nbytes = (size_t)pl.p[i].numel * sizeof(float);
        }
        int src = yf_st_save(grads, ts, pl.n, NULL);
        free(ts);
        free(pl.p);
        if (src != 0) goto done;
    }
    rc = 0;
done:
    fprintf(stderr, "yuanft score: %.2f s, peak RSS %zu MB\n", yf_time() - t0, yf_peak_rss_mb());
    free(logits);
    yf_lora_free(&lo);
    yf_model_free(m);
    yf_table_free(&bt);
    return rc ? yc_fail("score") : 0;
}
