/* config: parse, validate and write the Hugging Face config.json of a Yuan model. */
#include "formats/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Sizes above this are surely a typo, and keeping them small keeps every
 * product of two of them (V*D, I*D) far from int64 overflow. */
#define YF_CONFIG_MAX_DIM ((int64_t)1 << 24)

/* ---- field readers -----------------------------------------------------------
 * Each returns 1 when the field was present and read, 0 when absent (or JSON
 * null, which HF writes for unset ids), -1 on a type error (message set). */

static int get_int(const cJSON *root, const char *key, const char *path, int64_t *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it)) return 0;
    if (!cJSON_IsNumber(it)) return yf_errorf("%s: field \"%s\" must be an integer", path, key);
    double d = it->valuedouble;
    /* 2^53: beyond it doubles no longer hold every integer */
    if (d != floor(d) || fabs(d) > 9007199254740992.0)
        return yf_errorf("%s: field \"%s\" must be an integer, not %g", path, key, d);
    *out = (int64_t)d;
    return 1;
}

static int get_float(const cJSON *root, const char *key, const char *path, float *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it)) return 0;
    if (!cJSON_IsNumber(it)) return yf_errorf("%s: field \"%s\" must be a number", path, key);
    *out = (float)it->valuedouble;
    return 1;
}

static int get_bool(const cJSON *root, const char *key, const char *path, bool *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it)) return 0;
    if (!cJSON_IsBool(it)) return yf_errorf("%s: field \"%s\" must be true or false", path, key);
    *out = cJSON_IsTrue(it);
    return 1;
}

static int get_str(const cJSON *root, const char *key, const char *path, char *out, size_t cap) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it)) return 0;
    if (!cJSON_IsString(it)) return yf_errorf("%s: field \"%s\" must be a string", path, key);
    if (strlen(it->valuestring) >= cap)
        return yf_errorf("%s: field \"%s\" is too long (\"%.20s...\")", path, key, it->valuestring);
    strcpy(out, it->valuestring);
    return 1;
}

static void set_defaults(yf_config *c) {
    memset(c, 0, sizeof *c);
    c->max_position_embeddings = 8192;
    c->rms_norm_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    c->tie_word_embeddings = true;
    c->reset_attention_mask = true;
    c->use_loss_mask = false;
    c->eod_token = 77185;
    c->sep_token = 77187;
    c->pad_token_id = -1; /* resolved to eod_token below when absent */
    strcpy(c->torch_dtype, "float32");
}

int yf_config_parse(const char *json_text, const char *path, yf_config *cfg) {
    set_defaults(cfg);
    const char *where = path ? path : "config";
    cJSON *root = cJSON_Parse(json_text);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at ? (long)(at - json_text) : -1;
        return yf_errorf("%s: not valid JSON (near byte %ld)", where, off);
    }
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        yf_errorf("%s: config must be a JSON object", where);
        goto done;
    }
    static const struct { const char *key; size_t off; } required[] = {
        {"vocab_size", offsetof(yf_config, vocab_size)},
        {"hidden_size", offsetof(yf_config, hidden_size)},
        {"intermediate_size", offsetof(yf_config, intermediate_size)},
        {"num_hidden_layers", offsetof(yf_config, num_hidden_layers)},
        {"num_attention_heads", offsetof(yf_config, num_attention_heads)},
    };
    for (size_t i = 0; i < sizeof required / sizeof *required; i++) {
        int64_t *dst = (int64_t *)((char *)cfg + required[i].off);
        int got = get_int(root, required[i].key, where, dst);
        if (got < 0) goto done;
        if (got == 0) {
            yf_errorf("%s: missing required field \"%s\"", where, required[i].key);
            goto done;
        }
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (mt && cJSON_IsString(mt) && strcmp(mt->valuestring, "yuan") != 0) {
        yf_errorf("%s: model_type is \"%s\", expected \"yuan\"", where, mt->valuestring);
        goto done;
    }
    if (get_int(root, "max_position_embeddings", where, &cfg->max_position_embeddings) < 0) goto done;
    if (get_float(root, "rms_norm_eps", where, &cfg->rms_norm_eps) < 0) goto done;
    /* rope_theta is the HF name; some Yuan configs spell it rotary_base */
    int got_theta = get_float(root, "rope_theta", where, &cfg->rope_theta);
    if (got_theta < 0) goto done;
    if (got_theta == 0 && get_float(root, "rotary_base", where, &cfg->rope_theta) < 0) goto done;
    if (get_bool(root, "tie_word_embeddings", where, &cfg->tie_word_embeddings) < 0) goto done;
    if (get_bool(root, "reset_attention_mask", where, &cfg->reset_attention_mask) < 0) goto done;
    if (get_bool(root, "use_loss_mask", where, &cfg->use_loss_mask) < 0) goto done;
    if (get_int(root, "eod_token", where, &cfg->eod_token) < 0) goto done;
    if (get_int(root, "sep_token", where, &cfg->sep_token) < 0) goto done;
    int got_pad = get_int(root, "pad_token_id", where, &cfg->pad_token_id);
    if (got_pad < 0) goto done;
    /* The fine-tuning recipe pads with <eod>. */
    if (got_pad == 0) cfg->pad_token_id = cfg->eod_token;
    if (get_str(root, "torch_dtype", where, cfg->torch_dtype, sizeof cfg->torch_dtype) < 0) goto done;
    rc = yf_config_validate(cfg, where);
done:
    cJSON_Delete(root);
    return rc;
}

int yf_config_validate(const yf_config *c, const char *where) {
    if (!where) where = "config";
    const struct { const char *key; int64_t v; } sizes[] = {
        {"vocab_size", c->vocab_size},
        {"hidden_size", c->hidden_size},
        {"intermediate_size", c->intermediate_size},
        {"num_hidden_layers", c->num_hidden_layers},
        {"num_attention_heads", c->num_attention_heads},
        {"max_position_embeddings", c->max_position_embeddings},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        if (sizes[i].v <= 0)
            return yf_errorf("%s: \"%s\" must be positive, not %lld", where, sizes[i].key, (long long)sizes[i].v);
        if (sizes[i].v > YF_CONFIG_MAX_DIM)
            return yf_errorf("%s: \"%s\" = %lld is implausibly large (limit %lld)", where, sizes[i].key,
                             (long long)sizes[i].v, (long long)YF_CONFIG_MAX_DIM);
    }
    if (c->num_hidden_layers > 4096)
        return yf_errorf("%s: \"num_hidden_layers\" = %lld is implausibly large", where, (long long)c->num_hidden_layers);
    if (c->hidden_size % c->num_attention_heads != 0)
        return yf_errorf("%s: hidden_size %lld is not divisible by num_attention_heads %lld", where,
                         (long long)c->hidden_size, (long long)c->num_attention_heads);
    int64_t hd = c->hidden_size / c->num_attention_heads;
    if (hd % 2 != 0)
        return yf_errorf("%s: head_dim = hidden_size / num_attention_heads = %lld must be even (rotary embedding)",
                         where, (long long)hd);
    if (!(c->rms_norm_eps > 0) || !isfinite(c->rms_norm_eps))
        return yf_errorf("%s: \"rms_norm_eps\" must be a positive number, not %g", where, c->rms_norm_eps);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return yf_errorf("%s: \"rope_theta\" must be a positive number, not %g", where, c->rope_theta);
    const struct { const char *key; int64_t v; } ids[] = {
        {"eod_token", c->eod_token}, {"sep_token", c->sep_token}, {"pad_token_id", c->pad_token_id}};
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++)
        if (ids[i].v < 0 || ids[i].v >= c->vocab_size)
            return yf_errorf("%s: \"%s\" = %lld is outside the vocabulary [0, %lld) (defaults: eod_token 77185, "
                             "sep_token 77187; set them for a smaller vocabulary)",
                             where, ids[i].key, (long long)ids[i].v, (long long)c->vocab_size);
    if (strcmp(c->torch_dtype, "float32") && strcmp(c->torch_dtype, "bfloat16") && strcmp(c->torch_dtype, "float16"))
        return yf_errorf("%s: \"torch_dtype\" is \"%s\"; expected float32, bfloat16 or float16", where, c->torch_dtype);
    return 0;
}

int yf_config_load(const char *path, yf_config *cfg) {
    char *text = NULL;
    if (yf_read_file_max(path, YF_MAX_CONFIG_BYTES, &text, NULL)) return -1;
    int rc = yf_config_parse(text, path, cfg);
    free(text);
    return rc;
}

/* ---- writing ---------------------------------------------------------------- */

int yf_config_save(const char *path, const yf_config *c) {
    if (yf_config_validate(c, path)) return -1;
    cJSON *r = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(r, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("YuanForCausalLM"));
    cJSON_AddStringToObject(r, "model_type", "yuan");
    cJSON_AddNumberToObject(r, "vocab_size", (double)c->vocab_size);
    cJSON_AddNumberToObject(r, "hidden_size", (double)c->hidden_size);
    cJSON_AddNumberToObject(r, "intermediate_size", (double)c->intermediate_size);
    cJSON_AddNumberToObject(r, "num_hidden_layers", (double)c->num_hidden_layers);
    cJSON_AddNumberToObject(r, "num_attention_heads", (double)c->num_attention_heads);
    cJSON_AddStringToObject(r, "hidden_act", "silu");
    cJSON_AddNumberToObject(r, "max_position_embeddings", (double)c->max_position_embeddings);
    /* floats go through a decimal string so 1e-6f prints as 1e-06, not 9.99999997e-07 */
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", c->rms_norm_eps);
    cJSON_AddNumberToObject(r, "rms_norm_eps", strtod(buf, NULL));
    snprintf(buf, sizeof buf, "%.7g", c->rope_theta);
    cJSON_AddNumberToObject(r, "rope_theta", strtod(buf, NULL));
    cJSON_AddNumberToObject(r, "initializer_range", 0.02);
    cJSON_AddBoolToObject(r, "tie_word_embeddings", c->tie_word_embeddings);
    cJSON_AddNumberToObject(r, "pad_token_id", (double)c->pad_token_id);
    cJSON_AddNumberToObject(r, "bos_token_id", (double)c->eod_token);
    cJSON_AddNumberToObject(r, "eos_token_id", (double)c->eod_token);
    cJSON_AddNumberToObject(r, "eod_token", (double)c->eod_token);
    cJSON_AddNumberToObject(r, "sep_token", (double)c->sep_token);
    cJSON_AddBoolToObject(r, "use_loss_mask", c->use_loss_mask);
    cJSON_AddBoolToObject(r, "reset_attention_mask", c->reset_attention_mask);
    cJSON_AddBoolToObject(r, "reset_position_ids", c->reset_attention_mask);
    cJSON_AddBoolToObject(r, "causal_mask", true);
    cJSON_AddBoolToObject(r, "use_flash_attention", false);
    cJSON_AddBoolToObject(r, "use_cache", true);
    cJSON_AddStringToObject(r, "torch_dtype", c->torch_dtype);
    char *text = cJSON_Print(r);
    cJSON_Delete(r);
    YF_CHECK(text != NULL);
    /* cJSON indents with tabs and writes "key":<tab>value; HF's files use two
     * spaces and ": ". No value here contains a tab, so a rewrite is safe. */
    size_t n = 0, cap = strlen(text) * 2 + 2;
    char *withnl = yf_malloc(cap);
    for (const char *p = text; *p; p++) {
        if (*p == '\t' && p > text && p[-1] == ':') withnl[n++] = ' ';
        else if (*p == '\t') { withnl[n++] = ' '; withnl[n++] = ' '; }
        else withnl[n++] = *p;
    }
    withnl[n] = '\n';
    withnl[n + 1] = 0;
    cJSON_free(text);
    int rc = yf_write_file_atomic(path, withnl, n + 1);
    free(withnl);
    return rc;
}
