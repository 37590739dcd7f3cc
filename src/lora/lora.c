/* lora: LoRA / DoRA adapter tensors, PEFT file format, init, merge
 * (shared/docs/finetune-semantics.md). The forward/backward math lives in
 * the model (yf_linear_fwd / yf_linear_bwd, model/model_internal.h). */
#include "lora/lora.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "kernels/cpu/quant.h"

static const char *proj_section(int p) { return p <= YF_O ? "self_attn" : "mlp"; }

/* [out, in] of a projection for a config */
static void proj_dims(const yf_config *cfg, int p, int64_t *out, int64_t *in) {
    int64_t D = cfg->hidden_size, I = cfg->intermediate_size;
    *out = (p == YF_GATE || p == YF_UP) ? I : D;
    *in = p == YF_DOWN ? I : D;
}

static void key_name(char *buf, size_t cap, int64_t l, int p, const char *what) {
    snprintf(buf, cap, "base_model.model.model.layers.%lld.%s.%s.%s", (long long)l, proj_section(p), yf_proj_names[p],
             what);
}

int yf_lora_parse_targets(const char *list, unsigned *mask) {
    *mask = 0;
    const char *p = list;
    while (*p) {
        while (*p == ',' || *p == ' ') p++;
        if (!*p) break;
        size_t n = strcspn(p, ", ");
        char name[64];
        if (n >= sizeof name) return yf_errorf("lora: target module name '%.40s...' is too long", p);
        memcpy(name, p, n);
        name[n] = 0;
        p += n;
        if (!strcmp(name, "all-linear") || !strcmp(name, "all")) {
            *mask |= (1u << YF_NPROJ) - 1;
            continue;
        }
        int found = -1;
        for (int i = 0; i < YF_NPROJ; i++)
            if (!strcmp(name, yf_proj_names[i])) found = i;
        if (found < 0)
            return yf_errorf("lora: unknown target module '%s' (Yuan's projections: q_proj, k_proj, v_proj, o_proj, "
                             "gate_proj, up_proj, down_proj, or all-linear)", name);
        *mask |= 1u << found;
    }
    if (!*mask) return yf_errorf("lora: no target modules given");
    return 0;
}

int yf_lora_create(yf_lora *lo, const yf_config *cfg, const yf_lora_cfg *lc) {
    memset(lo, 0, sizeof *lo);
    if (lc->r <= 0) return yf_errorf("lora: r must be a positive rank (got %d)", lc->r);
    if (!(lc->targets & ((1u << YF_NPROJ) - 1)) || (lc->targets >> YF_NPROJ))
        return yf_errorf("lora: target modules must be a non-empty subset of the seven projections");
    if (!(lc->dropout >= 0 && lc->dropout < 1)) return yf_errorf("lora: dropout must be in [0, 1) (got %g)", lc->dropout);
    if (cfg->num_hidden_layers <= 0) return yf_errorf("lora: the config has no layers");
    lo->cfg = *lc;
    lo->scaling = lc->use_rslora ? lc->alpha / sqrtf((float)lc->r) : lc->alpha / (float)lc->r;
    lo->n_layers = cfg->num_hidden_layers;
    lo->mods = yf_calloc((size_t)(lo->n_layers * YF_NPROJ), sizeof *lo->mods);
    yf_table_init(&lo->store);
    char key[160];
    for (int64_t l = 0; l < lo->n_layers; l++)
        for (int p = 0; p < YF_NPROJ; p++) {
            if (!(lc->targets & (1u << p))) continue;
            yf_lora_mod *md = &lo->mods[l * YF_NPROJ + p];
            proj_dims(cfg, p, &md->out, &md->in);
            key_name(key, sizeof key, l, p, "lora_A.weight");
            md->A = yf_table_alloc(&lo->store, key, YF_F32, 2, (int64_t[]){lc->r, md->in})->data;
            key_name(key, sizeof key, l, p, "lora_B.weight");
            md->B = yf_table_alloc(&lo->store, key, YF_F32, 2, (int64_t[]){md->out, lc->r})->data;
            if (lc->use_dora) {
                key_name(key, sizeof key, l, p, "lora_magnitude_vector");
                md->m = yf_table_alloc(&lo->store, key, YF_F32, 1, (int64_t[]){md->out})->data;
            }
        }
    return 0;
}

static inline float wget(const void *w, yf_dtype wt, int64_t k) {
    return wt == YF_F32 ? ((const float *)w)[k]
           : wt == YF_BF16 ? yf_bf16_to_f32(((const uint16_t *)w)[k])
                           : yf_f16_to_f32(((const uint16_t *)w)[k]);
}

/* row o of W + s B A into row[in] (double); W may be quantized (YF_QMAT:
 * its dequantized values) */
static void merged_row(double *row, const yf_lora_mod *md, int r, float s, const void *w, yf_dtype wt, int64_t o) {
    int64_t in = md->in;
    if (wt == YF_QMAT) {
        float *f = yf_malloc((size_t)in * sizeof(float));
        const yf_qmat *qm = w;
        YF_CHECK(qm->N == md->out && qm->K == in);
        yf_qmat_row(qm, o, f);
        for (int64_t i = 0; i < in; i++) row[i] = f[i];
        free(f);
    } else {
        for (int64_t i = 0; i < in; i++) row[i] = wget(w, wt, o * in + i);
    }
    for (int k = 0; k < r; k++) {
        double b = (double)s * md->B[o * r + k];
        if (b == 0) continue;
        const float *a = md->A + (int64_t)k * in;
        for (int64_t i = 0; i < in; i++) row[i] += b * a[i];
    }
}

void yf_lora_row_norms(const yf_lora_mod *md, int r, float s, const void *w, yf_dtype wt, float *n) {
#pragma omp parallel if (md->out * md->in >= 32768)
    {
        double *row = yf_malloc((size_t)md->in * sizeof(double));
#pragma omp for schedule(static)
        for (int64_t o = 0; o < md->out; o++) {
            merged_row(row, md, r, s, w, wt, o);
            double ss = 0;
            for (int64_t i = 0; i < md->in; i++) ss += row[i] * row[i];
            n[o] = (float)sqrt(ss);
        }
        free(row);
    }
}

int yf_lora_check_fits(const yf_lora *lo, const yf_config *cfg) {
    if (lo->n_layers != cfg->num_hidden_layers)
        return yf_errorf("lora: the adapter has %lld layers but the model has %lld: it was made for another model",
                         (long long)lo->n_layers, (long long)cfg->num_hidden_layers);
    for (int64_t l = 0; l < lo->n_layers; l++)
        for (int p = 0; p < YF_NPROJ; p++) {
            const yf_lora_mod *md = yf_lora_get(lo, l, (yf_proj)p);
            if (!md) continue;
            int64_t out, in;
            proj_dims(cfg, p, &out, &in);
            if (md->out != out || md->in != in)
                return yf_errorf("lora: layer %lld %s adapter is for a [%lld, %lld] weight but the model's is "
                                 "[%lld, %lld]: it was made for another model",
                                 (long long)l, yf_proj_names[p], (long long)md->out, (long long)md->in,
                                 (long long)out, (long long)in);
        }
    return 0;
}

/* The base weight of (layer, proj) in a table of checkpoint tensors, checked
 * against the module's shape; NULL (message) when absent or not a float
 * [out, in] tensor. */
static yf_tensor *base_weight(const yf_table *tab, const yf_lora_mod *md, int64_t l, int p, const char *what) {
    char name[160];
    snprintf(name, sizeof name, "model.layers.%lld.%s.%s.weight", (long long)l, proj_section(p), yf_proj_names[p]);
    yf_tensor *t = yf_table_find(tab, name);
    if (!t) {
        yf_errorf("%s: the model has no tensor %s", what, name);
        return NULL;
    }
    if (t->ndim != 2 || t->shape[0] != md->out || t->shape[1] != md->in ||
        (t->dtype != YF_F32 && t->dtype != YF_BF16 && t->dtype != YF_F16 && t->dtype != YF_QMAT)) {
        yf_errorf("%s: tensor %s is not a float [%lld, %lld] weight", what, name, (long long)md->out,
                  (long long)md->in);
        return NULL;
    }
    return t;
}

int yf_lora_init(yf_lora *lo, const yf_config *cfg, const yf_table *weights, yf_rng *rng) {
    if (yf_lora_check_fits(lo, cfg) != 0) return -1;
    int r = lo->cfg.r;
    for (int64_t l = 0; l < lo->n_layers; l++)
        for (int p = 0; p < YF_NPROJ; p++) {
            yf_lora_mod *md = yf_lora_get(lo, l, (yf_proj)p);
            if (!md) continue;
            /* kaiming_uniform_(a=sqrt(5)): bound = sqrt(6 / ((1 + 5) * fan_in)) = 1/sqrt(in) */
            double bound = 1.0 / sqrt((double)md->in);
            for (int64_t i = 0; i < (int64_t)r * md->in; i++)
                md->A[i] = (float)((2 * yf_rng_uniform(rng) - 1) * bound);
            memset(md->B, 0, (size_t)(md->out * r) * sizeof(float));
            if (md->m) {
                const yf_tensor *w = weights ? base_weight(weights, md, l, p, "DoRA init") : NULL;
                if (!w) return weights ? -1 : yf_errorf("DoRA init: the base model's weights are needed");
                yf_lora_row_norms(md, r, lo->scaling, w->data, w->dtype, md->m); /* B = 0: ||W|| */
            }
        }
    return 0;
}

/* ---- PEFT files -------------------------------------------------------------------- */

static int json_number(const cJSON *root, const char *key, const char *path, double def, double *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(it)) return yf_errorf("%s: field \"%s\" must be a number", path, key);
    *out = it->valuedouble;
    return 0;
}

static int json_bool(const cJSON *root, const char *key, const char *path, bool def, bool *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(it)) return yf_errorf("%s: field \"%s\" must be true or false", path, key);
    *out = cJSON_IsTrue(it);
    return 0;
}

static int parse_adapter_config(const char *path, yf_lora_cfg *lc) {
    char *text = NULL;
    if (yf_read_file_max(path, YF_MAX_CONFIG_BYTES, &text, NULL) != 0) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return yf_errorf("%s: not a JSON object", path);
    }
    int rc = -1;
    memset(lc, 0, sizeof *lc);
    double r, alpha, drop;
    bool fifo;
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    if (pt && cJSON_IsString(pt) && strcmp(pt->valuestring, "LORA") != 0) {
        yf_errorf("%s: peft_type is \"%s\"; only LORA adapters (with or without DoRA) are supported", path,
                  pt->valuestring);
        goto done;
    }
    if (json_number(root, "r", path, 8, &r) || json_number(root, "lora_alpha", path, 8, &alpha) ||
        json_number(root, "lora_dropout", path, 0, &drop) || json_bool(root, "use_rslora", path, false, &lc->use_rslora) ||
        json_bool(root, "use_dora", path, false, &lc->use_dora) || json_bool(root, "fan_in_fan_out", path, false, &fifo))
        goto done;
    if (r != floor(r) || r < 1 || r > 1e6) {
        yf_errorf("%s: r must be a positive integer (got %g)", path, r);
        goto done;
    }
    if (fifo) {
        yf_errorf("%s: fan_in_fan_out true is not supported (Yuan's projections are [out, in])", path);
        goto done;
    }
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(root, "bias");
    if (bias && cJSON_IsString(bias) && strcmp(bias->valuestring, "none") != 0) {
        yf_errorf("%s: bias \"%s\" is not supported (Yuan's projections have no bias; use \"none\")", path,
                  bias->valuestring);
        goto done;
    }
    static const char *const unsupported[] = {"layers_to_transform", "rank_pattern", "alpha_pattern", "modules_to_save"};
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, unsupported[i]);
        bool empty = !it || cJSON_IsNull(it) || ((cJSON_IsObject(it) || cJSON_IsArray(it)) && !it->child);
        if (!empty) {
            yf_errorf("%s: \"%s\" is set; per-layer patterns and extra saved modules are not supported", path,
                      unsupported[i]);
            goto done;
        }
    }
    lc->r = (int)r;
    lc->alpha = (float)alpha;
    lc->dropout = (float)drop;
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(root, "target_modules");
    if (cJSON_IsString(tm)) {
        if (yf_lora_parse_targets(tm->valuestring, &lc->targets) != 0) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", yf_last_error());
            yf_errorf("%s: %s", path, msg);
            goto done;
        }
    } else if (cJSON_IsArray(tm)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, tm) {
            unsigned one;
            if (!cJSON_IsString(it)) {
                yf_errorf("%s: target_modules must hold strings", path);
                goto done;
            }
            if (yf_lora_parse_targets(it->valuestring, &one) != 0) {
                char msg[512];
                snprintf(msg, sizeof msg, "%s", yf_last_error()); /* yf_errorf reuses that buffer */
                yf_errorf("%s: %s", path, msg);
                goto done;
            }
            lc->targets |= one;
        }
        if (!lc->targets) {
            yf_errorf("%s: target_modules is empty", path);
            goto done;
        }
    } else {
        yf_errorf("%s: target_modules (a list of module names) is missing", path);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

/* An adapter's rank against the model and the file: r at most min(in, out)
 * of every targeted projection (a larger rank adds nothing and would size
 * every buffer by a number from the file), and the tensors it implies (at
 * least 2 bytes an element) must fit in the file, counted in int64 with
 * overflow checks. */
static int check_rank(const yf_lora_cfg *lc, const yf_config *cfg, const yf_table *tab, const char *cpath,
                      const char *wpath) {
    int64_t need = 0, file = 0;
    for (int i = 0; i < tab->n; i++) file += (int64_t)tab->t[i].nbytes;
    for (int p = 0; p < YF_NPROJ; p++) {
        if (!(lc->targets & (1u << p))) continue;
        int64_t out, in, per;
        proj_dims(cfg, p, &out, &in);
        if (lc->r > (out < in ? out : in))
            return yf_errorf("%s: r = %d is larger than %s's smaller side (%lld x %lld): the adapter does not fit this "
                             "model", cpath, lc->r, yf_proj_names[p], (long long)out, (long long)in);
        if (__builtin_add_overflow(in, out, &per) || __builtin_add_overflow(per, lc->use_dora ? 1 : 0, &per) ||
            __builtin_mul_overflow(per, (int64_t)lc->r, &per) ||
            __builtin_mul_overflow(per, cfg->num_hidden_layers, &per) || __builtin_mul_overflow(per, (int64_t)2, &per) ||
            __builtin_add_overflow(need, per, &need))
            return yf_errorf("%s: r = %d and this model's sizes overflow 64 bits", cpath, lc->r);
    }
    if (need > file)
        return yf_errorf("%s: holds %lld bytes of tensors, but r = %d on %lld layers needs at least %lld: the adapter "
                         "does not match adapter_config.json", wpath, (long long)file, lc->r,
                         (long long)cfg->num_hidden_layers, (long long)need);
    return 0;
}

int yf_lora_load(const char *dir, const yf_config *cfg, yf_lora *lo) {
    memset(lo, 0, sizeof *lo);
    char *cpath = yf_path_join(dir, "adapter_config.json");
    char *wpath = yf_path_join(dir, "adapter_model.safetensors");
    yf_lora_cfg lc;
    yf_table tab;
    yf_table_init(&tab);
    int rc = -1;
    if (parse_adapter_config(cpath, &lc) != 0) goto done;
    if (lc.dropout < 0 || lc.dropout >= 1) {
        yf_errorf("%s: lora_dropout must be in [0, 1) (got %g)", cpath, lc.dropout);
        goto done;
    }
    /* the file's sizes are checked before anything is allocated for them */
    if (yf_st_load(wpath, &tab) != 0 || check_rank(&lc, cfg, &tab, cpath, wpath) != 0) goto done;
    if (yf_lora_create(lo, cfg, &lc) != 0) goto done;
    bool *used = yf_calloc((size_t)tab.n + 1, 1);
    for (int i = 0; i < lo->store.n && rc != 0; i++) {
        yf_tensor *want = &lo->store.t[i];
        yf_tensor *t = yf_table_find(&tab, want->name);
        char s1[96], s2[96];
        if (!t) {
            yf_errorf("%s: tensor %s is missing (adapter_config.json says r=%d, targets as listed%s)", wpath,
                      want->name, lc.r, lc.use_dora ? ", DoRA" : "");
            break;
        }
        bool same = t->ndim == want->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == want->shape[d];
        if (!same) {
            yf_errorf("%s: tensor %s has shape %s but this model and r=%d need %s: the adapter does not fit the "
                      "model", wpath, want->name, yf_shape_str(t, s1, sizeof s1), lc.r,
                      yf_shape_str(want, s2, sizeof s2));
            break;
        }
        if (t->dtype != YF_F32 && t->dtype != YF_BF16 && t->dtype != YF_F16) {
            yf_errorf("%s: tensor %s has dtype %s; adapters must be F32, BF16 or F16", wpath, want->name,
                      yf_dtype_name(t->dtype));
            break;
        }
        yf_tensor_to_f32(t, want->data);
        used[t - tab.t] = true;
        if (i == lo->store.n - 1) rc = 0;
    }
    for (int i = 0; rc == 0 && i < tab.n; i++)
        if (!used[i])
            rc = yf_errorf("%s: unexpected tensor %s (the adapter does not fit this model of %lld layers, or "
                           "adapter_config.json does not describe it)", wpath, tab.t[i].name,
                           (long long)cfg->num_hidden_layers);
    free(used);
done:
    if (rc != 0) yf_lora_free(lo);
    yf_table_free(&tab);
    free(cpath);
    free(wpath);
    return rc;
}

/* the shortest decimal that reads back as f, so 0.05f is written 0.05 */
static double short_double(float f) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.9g", (double)f);
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if ((float)strtod(buf, NULL) == f) break;
    }
    return strtod(buf, NULL);
}

int yf_lora_save(const yf_lora *lo, const char *dir, const char *base_model_name_or_path) {
    if (yf_mkdir_p(dir) != 0) return -1;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "peft_type", "LORA");
    cJSON_AddStringToObject(root, "task_type", "CAUSAL_LM");
    cJSON_AddNumberToObject(root, "r", lo->cfg.r);
    cJSON_AddNumberToObject(root, "lora_alpha", short_double(lo->cfg.alpha));
    cJSON_AddNumberToObject(root, "lora_dropout", short_double(lo->cfg.dropout));
    cJSON *tm = cJSON_AddArrayToObject(root, "target_modules");
    for (int p = 0; p < YF_NPROJ; p++)
        if (lo->cfg.targets & (1u << p)) cJSON_AddItemToArray(tm, cJSON_CreateString(yf_proj_names[p]));
    cJSON_AddStringToObject(root, "bias", "none");
    cJSON_AddBoolToObject(root, "use_rslora", lo->cfg.use_rslora);
    cJSON_AddBoolToObject(root, "use_dora", lo->cfg.use_dora);
    cJSON_AddBoolToObject(root, "fan_in_fan_out", false);
    if (base_model_name_or_path)
        cJSON_AddStringToObject(root, "base_model_name_or_path", base_model_name_or_path);
    else
        cJSON_AddNullToObject(root, "base_model_name_or_path");
    cJSON_AddBoolToObject(root, "inference_mode", true); /* as PEFT's save_pretrained writes it */
    cJSON_AddNullToObject(root, "modules_to_save");
    cJSON_AddBoolToObject(root, "init_lora_weights", true);
    char *raw = cJSON_Print(root);
    cJSON_Delete(root);
    /* HF/PEFT files are indented with two spaces and "key": value; cJSON uses
     * tabs (never inside strings, where it escapes them) */
    char *json = yf_malloc(2 * strlen(raw) + 2);
    size_t n = 0;
    for (const char *q = raw; *q; q++) {
        if (*q == '\t' && q > raw && q[-1] == ':') json[n++] = ' ';
        else if (*q == '\t') json[n++] = ' ', json[n++] = ' ';
        else json[n++] = *q;
    }
    json[n++] = '\n';
    json[n] = 0;
    cJSON_free(raw);
    /* The pair is written whole into DIR/.adapter.tmp.PID, then each file is
     * renamed into DIR (weights first) and DIR synced: a crash leaves the old
     * pair, or at worst (between the two renames) the new weights beside the
     * old config, which then no longer loads if the rank or targets changed:
     * never a half-written file. */
    char tname[64];
    snprintf(tname, sizeof tname, ".adapter.tmp.%d", (int)getpid());
    char *tmp = yf_path_join(dir, tname);
    static const char *const names[2] = {"adapter_model.safetensors", "adapter_config.json"};
    char *tp[2], *fp[2];
    for (int i = 0; i < 2; i++) tp[i] = yf_path_join(tmp, names[i]), fp[i] = yf_path_join(dir, names[i]);
    static const char *const meta[] = {"format", "pt", NULL};
    int rc = mkdir(tmp, 0755) != 0 && errno != EEXIST ? yf_errorf("%s: cannot create: %s", tmp, strerror(errno)) : 0;
    if (rc == 0) rc = yf_write_file_atomic(tp[1], json, strlen(json));
    if (rc == 0) rc = yf_st_save(tp[0], lo->store.t, lo->store.n, meta);
    for (int i = 0; i < 2 && rc == 0; i++)
        if (rename(tp[i], fp[i]) != 0) rc = yf_errorf("%s: cannot rename into place: %s", fp[i], strerror(errno));
    if (rc == 0) rc = yf_fsync_dir(dir);
    for (int i = 0; i < 2; i++) unlink(tp[i]), free(tp[i]), free(fp[i]);
    rmdir(tmp);
    free(tmp);
    free(json);
    return rc;
}

/* ---- gradients, parameters ------------------------------------------------------------ */

void yf_lora_alloc_grads(yf_lora *lo) {
    int r = lo->cfg.r;
    for (int64_t i = 0; i < lo->n_layers * YF_NPROJ; i++) {
        yf_lora_mod *md = &lo->mods[i];
        if (!md->A || md->gA) continue;
        md->gA = yf_aligned_alloc((size_t)(r * md->in) * sizeof(float));
        md->gB = yf_aligned_alloc((size_t)(md->out * r) * sizeof(float));
        yf_table_own(&lo->store, md->gA);
        yf_table_own(&lo->store, md->gB);
        if (md->m) {
            md->gm = yf_aligned_alloc((size_t)md->out * sizeof(float));
            yf_table_own(&lo->store, md->gm);
        }
    }
}

void yf_lora_zero_grads(yf_lora *lo) {
    int r = lo->cfg.r;
    for (int64_t i = 0; i < lo->n_layers * YF_NPROJ; i++) {
        yf_lora_mod *md = &lo->mods[i];
        if (!md->gA) continue;
        memset(md->gA, 0, (size_t)(r * md->in) * sizeof(float));
        memset(md->gB, 0, (size_t)(md->out * r) * sizeof(float));
        if (md->gm) memset(md->gm, 0, (size_t)md->out * sizeof(float));
    }
}

void yf_lora_params(yf_lora *lo, yf_param_list *out) {
    yf_lora_alloc_grads(lo);
    out->p = yf_calloc((size_t)lo->store.n + 1, sizeof *out->p);
    out->n = 0;
    for (int64_t i = 0; i < lo->n_layers * YF_NPROJ; i++) {
        yf_lora_mod *md = &lo->mods[i];
        if (!md->A) continue;
        /* the store holds A, B (, m) of each module in this same order */
        for (int j = 0; j < (md->m ? 3 : 2); j++) {
            yf_param *p = &out->p[out->n];
            const yf_tensor *t = &lo->store.t[out->n];
            out->n++;
            p->name = t->name;
            p->w = t->data;
            p->g = j == 0 ? md->gA : j == 1 ? md->gB : md->gm;
            p->numel = yf_tensor_numel(t);
            p->ndim = t->ndim;
            for (int d = 0; d < t->ndim; d++) p->shape[d] = t->shape[d];
            YF_CHECK(p->w == (j == 0 ? md->A : j == 1 ? md->B : md->m));
        }
    }
}

void yf_lora_free(yf_lora *lo) {
    free(lo->mods);
    yf_table_free(&lo->store);
    memset(lo, 0, sizeof *lo);
}

/* ---- merge ---------------------------------------------------------------------------- */

int yf_lora_merge_table(const yf_lora *lo, const yf_config *cfg, yf_table *tab) {
    if (yf_lora_check_fits(lo, cfg) != 0) return -1;
    int r = lo->cfg.r;
    for (int64_t l = 0; l < lo->n_layers; l++)
        for (int p = 0; p < YF_NPROJ; p++) {
            const yf_lora_mod *md = yf_lora_get(lo, l, (yf_proj)p);
            if (!md) continue;
            yf_tensor *t = base_weight(tab, md, l, p, "merge");
            if (!t) return -1;
            YF_CHECK(t->dtype != YF_QMAT); /* merge into the dequantized weights: yf_table_dequantized */
            void *nb = yf_aligned_alloc(t->nbytes);
            yf_table_own(tab, nb);
            const void *w = t->data;
            yf_dtype dt = t->dtype;
#pragma omp parallel if (md->out * md->in >= 32768)
            {
                double *row = yf_malloc((size_t)md->in * sizeof(double));
#pragma omp for schedule(static)
                for (int64_t o = 0; o < md->out; o++) {
                    merged_row(row, md, r, lo->scaling, w, dt, o);
                    double f = 1;
                    if (md->m) { /* DoRA: W' = m / ||W + sBA||_row * (W + sBA) */
                        double ss = 0;
                        for (int64_t i = 0; i < md->in; i++) ss += row[i] * row[i];
                        f = ss > 0 ? md->m[o] / sqrt(ss) : 0;
                    }
                    for (int64_t i = 0; i < md->in; i++) {
                        float v = (float)(row[i] * f);
                        int64_t k = o * md->in + i;
                        if (dt == YF_F32) ((float *)nb)[k] = v;
                        else if (dt == YF_BF16) ((uint16_t *)nb)[k] = yf_f32_to_bf16(v);
                        else ((uint16_t *)nb)[k] = yf_f32_to_f16(v);
                    }
                }
                free(row);
            }
            t->data = nb;
        }
    return 0;
}
