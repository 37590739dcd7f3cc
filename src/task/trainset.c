/* trainset: see trainset.h. */
#include "task/trainset.h"

#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "formats/vocab_map.h"
#include "task/data.h"
#include "tokenizer/tokenizer.h"

static int trainset_check(yf_trainset *d, const char *path, const yf_config *cfg);

bool yf_trainset_is_text(const char *path) {
    size_t n = strlen(path);
    return (n > 6 && !strcmp(path + n - 6, ".jsonl")) || (n > 5 && !strcmp(path + n - 5, ".json"));
}

/* Records {"input", "output"} → prompt/answer ids through the tokenizer,
 * the template and the model's vocabulary map, padded into [N, T]. */
static int trainset_from_text(yf_trainset *d, const char *path, const yf_trainset_opts *to, const yf_config *cfg) {
    yf_records recs = {0};
    yf_template tpl = {0};
    yf_tokenizer *tok = NULL;
    yf_encoder enc;
    yf_dataset ds = {0};
    yf_vocab_map vm = {0};
    int rc = -1;
    char *tp = to->tokenizer ? yf_strdup(to->tokenizer) : yf_path_join(to->model_dir, "tokenizer.model");
    if (!yf_file_exists(tp)) {
        yf_errorf("%s: tokenizer not found (text data needs --tokenizer FILE or MODEL/tokenizer.model)", tp);
        goto out;
    }
    if (yf_data_load(path, &recs) || yf_template_load(to->template_spec, &tpl) || yf_tokenizer_load(tp, &tok) ||
        yf_encoder_from_tokenizer(tok, &enc) || yf_dataset_build(&recs, &tpl, &enc, to->max_length, &ds) ||
        yf_vocab_map_load(to->model_dir, yf_tokenizer_n_ids(tok), &vm))
        goto out;
    if (ds.n == 0) {
        yf_errorf("%s: no records", path);
        goto out;
    }
    int64_t T = ds.longest > 0 ? ds.longest : 1, N = (int64_t)ds.n;
    yf_tensor *ti = yf_table_alloc(&d->tab, "input_ids", YF_I64, 2, (int64_t[]){N, T});
    yf_tensor *tl = yf_table_alloc(&d->tab, "labels", YF_I64, 2, (int64_t[]){N, T});
    int64_t *ids = ti->data, *lab = tl->data;
    for (int64_t i = 0; i < N; i++) {
        const yf_example *ex = &ds.ex[i];
        for (int64_t t = 0; t < T; t++) {
            ids[i * T + t] = t < ex->len ? ex->ids[t] : ds.pad_id;
            lab[i * T + t] = t >= ex->len ? -100 : to->train_on_inputs ? ex->ids[t] : ex->labels[t];
        }
    }
    yf_vocab_map_ids(&vm, ids, N * T);
    yf_vocab_map_ids(&vm, lab, N * T);
    d->N = d->n_records = N, d->T = T;
    d->n_truncated = ds.n_truncated;
    d->vocab_mapped = vm.n > 0;
    rc = 0;
out:
    free(tp);
    yf_dataset_free(&ds);
    yf_records_free(&recs);
    yf_template_free(&tpl);
    if (tok) yf_tokenizer_free(tok);
    yf_vocab_map_free(&vm);
    return rc ? rc : trainset_check(d, path, cfg);
}

int yf_trainset_load(const char *path, const yf_config *cfg, const yf_trainset_opts *o, yf_trainset *d) {
    memset(d, 0, sizeof *d);
    yf_table_init(&d->tab);
    if (!yf_file_exists(path))
        return yf_errorf("%s: data file not found (--data takes .jsonl/.json records or a .safetensors file with input_ids and labels)", path);
    if (yf_trainset_is_text(path)) return trainset_from_text(d, path, o, cfg);
    yf_table raw;
    yf_table_init(&raw);
    if (yf_st_load(path, &raw)) return -1;
    /* `yuanft data tokenize` writes tokenizer ids: a model with a pruned
     * vocabulary takes them through its map, as it takes records */
    char fmt[64];
    yf_vocab_map vm = {0};
    const yf_tensor *ti = yf_table_find(&raw, "input_ids"), *tl = yf_table_find(&raw, "labels");
    int rc = 0;
    if (ti && tl && ti->dtype == YF_I64 && tl->dtype == YF_I64 && o->model_dir &&
        yf_st_metadata(path, "format", fmt, sizeof fmt) == 1 && !strcmp(fmt, YF_PRETOKENISED_FORMAT)) {
        rc = yf_vocab_map_load(o->model_dir, 0, &vm);
        if (rc == 0 && vm.n > 0) {
            const yf_tensor *src[2] = {ti, tl};
            for (int k = 0; k < 2; k++) {
                yf_tensor *t = yf_table_alloc(&d->tab, src[k]->name, YF_I64, src[k]->ndim, src[k]->shape);
                memcpy(t->data, src[k]->data, src[k]->nbytes);
                yf_vocab_map_ids(&vm, t->data, yf_tensor_numel(t));
            }
            d->vocab_mapped = true;
        }
        yf_vocab_map_free(&vm);
    }
    yf_table_merge(&d->tab, &raw); /* the tensors not copied above (find returns the first of a name) */
    if (rc) return -1;
    return trainset_check(d, path, cfg);
}

/* The tensors' names, dtypes and shapes, every id, and the row lengths. */
static int trainset_check(yf_trainset *d, const char *path, const yf_config *cfg) {
    const yf_tensor *ti = yf_table_find(&d->tab, "input_ids"), *tl = yf_table_find(&d->tab, "labels");
    if (!ti || !tl) return yf_errorf("%s: needs tensors 'input_ids' and 'labels' [N, T] (I64)", path);
    if (ti->dtype != YF_I64 || tl->dtype != YF_I64 || ti->ndim != 2 || tl->ndim != 2 || ti->shape[0] != tl->shape[0] ||
        ti->shape[1] != tl->shape[1]) {
        char a[64], b[64];
        return yf_errorf("%s: input_ids %s %s and labels %s %s must both be I64 [N, T]", path, yf_dtype_name(ti->dtype),
                         yf_shape_str(ti, a, sizeof a), yf_dtype_name(tl->dtype), yf_shape_str(tl, b, sizeof b));
    }
    d->N = ti->shape[0], d->T = ti->shape[1];
    if (d->N <= 0 || d->T <= 0) return yf_errorf("%s: the data set is empty", path);
    d->ids = ti->data, d->labels = tl->data;
    d->len = yf_malloc((size_t)d->N * sizeof *d->len);
    const yf_tensor *tm = yf_table_find(&d->tab, "attention_mask");
    if (tm && (tm->dtype != YF_I64 || tm->ndim != 2 || tm->shape[0] != d->N || tm->shape[1] != d->T))
        return yf_errorf("%s: attention_mask must be I64 [N, T] like input_ids", path);
    for (int64_t i = 0; i < d->N; i++) {
        int64_t last = 0;
        for (int64_t t = 0; t < d->T; t++) {
            int64_t id = d->ids[i * d->T + t], lb = d->labels[i * d->T + t];
            if (id < 0 || id >= cfg->vocab_size)
                return yf_errorf("%s: input_ids[%lld, %lld] = %lld is outside the vocabulary [0, %lld)", path, (long long)i,
                                 (long long)t, (long long)id, (long long)cfg->vocab_size);
            if (lb != -100 && (lb < 0 || lb >= cfg->vocab_size))
                return yf_errorf("%s: labels[%lld, %lld] = %lld is neither -100 nor a token id below %lld", path, (long long)i,
                                 (long long)t, (long long)lb, (long long)cfg->vocab_size);
            if (lb != -100) last = t + 1;
            if (tm && ((const int64_t *)tm->data)[i * d->T + t] && t + 1 > last) last = t + 1;
        }
        d->len[i] = last > 0 ? last : 1;
        if (cfg->max_position_embeddings > 0 && d->len[i] > cfg->max_position_embeddings)
            return yf_errorf("%s: row %lld has %lld tokens, more than the model's max_position_embeddings %lld "
                             "(truncate the data, e.g. to 384 as the recipe does)",
                             path, (long long)i, (long long)d->len[i], (long long)cfg->max_position_embeddings);
    }
    return 0;
}

void yf_trainset_free(yf_trainset *d) {
    free(d->len);
    yf_table_free(&d->tab);
}
