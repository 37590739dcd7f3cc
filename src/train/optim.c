#include "train/optim.h"
#include "base/pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- schedules ---------------------------------------------------------- */

static const char *const g_sched_names[] = {"linear", "cosine", "constant", "constant_with_warmup"};

int yf_sched_parse(const char *name, yf_sched_kind *out) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, g_sched_names[i])) {
            *out = (yf_sched_kind)i;
            return 0;
        }
    return yf_errorf("unknown lr scheduler type '%s' (use linear, cosine, constant or constant_with_warmup)", name);
}

const char *yf_sched_name(yf_sched_kind k) { return (unsigned)k < 4 ? g_sched_names[k] : "?"; }

int64_t yf_warmup_steps(int64_t warmup_steps, double warmup_ratio, int64_t total) {
    if (warmup_steps > 0) return warmup_steps;
    if (warmup_ratio > 0) return (int64_t)ceil(warmup_ratio * (double)total);
    return 0;
}

static double max1(int64_t x) { return x > 1 ? (double)x : 1.0; }

double yf_sched_lr(const yf_sched *s, int64_t step) {
    double f;
    /* the lambdas of transformers.optimization, evaluated at the scheduler's
     * step count (0 for the first optimizer step) */
    if (s->kind == YF_SCHED_CONSTANT) return s->lr0;
    if (step < s->warmup) return s->lr0 * (double)step / max1(s->warmup);
    switch (s->kind) {
    case YF_SCHED_LINEAR:
        f = (double)(s->total - step) / max1(s->total - s->warmup);
        if (f < 0) f = 0;
        break;
    case YF_SCHED_COSINE: {
        double progress = (double)(step - s->warmup) / max1(s->total - s->warmup);
        f = 0.5 * (1.0 + cos(M_PI * progress));
        if (f < 0) f = 0;
        break;
    }
    default: f = 1.0; break;
    }
    return s->lr0 * f;
}

/* ---- gradient norm -------------------------------------------------------- */

/* Each tensor's sum of squares in order, in double, one pool task per tensor
 * (LoRA's dozens of small ones left the other core idle); the tensors' sums
 * then added in order: the same bits as one loop. */
typedef struct norm_job {
    const yf_param_list *pl;
    double *t;
} norm_job;

static void sumsq_task(void *ctx, int64_t i) {
    const norm_job *j = ctx;
    const float *g = j->pl->p[i].g;
    double t = 0;
    for (int64_t k = 0; k < j->pl->p[i].numel; k++) t += (double)g[k] * g[k];
    j->t[i] = t;
}

double yf_grad_norm(const yf_param_list *pl) {
    if (pl->n <= 0) return 0;
    double *t = yf_calloc((size_t)pl->n, sizeof(double)), ss = 0;
    norm_job j = {pl, t};
    if (pl->n < 65536)
        yf_par_for(pl->n, sumsq_task, &j);
    else
        for (int i = 0; i < pl->n; i++) sumsq_task(&j, i);
    for (int i = 0; i < pl->n; i++) ss += t[i];
    free(t);
    return sqrt(ss);
}

double yf_clip_grad_norm(const yf_param_list *pl, double max_norm) {
    double norm = yf_grad_norm(pl);
    if (max_norm <= 0) return norm;
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        float c = (float)coef;
        for (int i = 0; i < pl->n; i++)
            for (int64_t k = 0; k < pl->p[i].numel; k++) pl->p[i].g[k] *= c;
    }
    return norm;
}

void yf_zero_grads(const yf_param_list *pl) {
    for (int i = 0; i < pl->n; i++) memset(pl->p[i].g, 0, (size_t)pl->p[i].numel * sizeof(float));
}

/* ---- AdamW ------------------------------------------------------------------ */

yf_adamw_cfg yf_adamw_defaults(void) { return (yf_adamw_cfg){0.9, 0.999, 1e-8, 0.0}; }

bool yf_param_decays(const char *name) { return !strstr(name, "bias") && !strstr(name, "norm"); }

void yf_adamw_init(yf_adamw *o, const yf_param_list *pl, const yf_adamw_cfg *cfg, bool decay_all) {
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    o->n = pl->n;
    o->params = yf_calloc((size_t)(pl->n ? pl->n : 1), sizeof *o->params);
    o->m = yf_calloc((size_t)(pl->n ? pl->n : 1), sizeof *o->m);
    o->v = yf_calloc((size_t)(pl->n ? pl->n : 1), sizeof *o->v);
    o->decay = yf_calloc((size_t)(pl->n ? pl->n : 1), sizeof *o->decay);
    for (int i = 0; i < pl->n; i++) {
        o->params[i] = pl->p[i];
        size_t bytes = (size_t)pl->p[i].numel * sizeof(float);
        o->m[i] = yf_aligned_alloc(bytes ? bytes : 4);
        o->v[i] = yf_aligned_alloc(bytes ? bytes : 4);
        o->decay[i] = decay_all || yf_param_decays(pl->p[i].name);
    }
}

/* One step's constants, and the pieces of the parameters the pool hands out:
 * each element's update depends on that element alone, so any split gives
 * the same bits. */
typedef struct adamw_job {
    yf_adamw *o;
    int64_t *first; /* [n + 1]: tensor i's pieces are first[i] .. first[i + 1] - 1 */
    int64_t piece;  /* elements per piece */
    double lr;
    float step_size, bc2_sqrt, eps, one_m_b1, fb2, one_m_b2;
} adamw_job;

static void adamw_piece(void *ctx, int64_t p) {
    const adamw_job *j = ctx;
    yf_adamw *o = j->o;
    int lo = 0, hi = o->n - 1; /* the tensor i with first[i] <= p < first[i + 1] */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (j->first[mid] <= p)
            lo = mid;
        else
            hi = mid - 1;
    }
    int i = lo;
    float *w = o->params[i].w, *g = o->params[i].g, *m = o->m[i], *v = o->v[i];
    int64_t k0 = (p - j->first[i]) * j->piece, n = o->params[i].numel;
    int64_t k1 = k0 + j->piece < n ? k0 + j->piece : n;
    const float keep = (float)(1.0 - j->lr * (o->decay[i] ? o->cfg.weight_decay : 0.0));
    for (int64_t k = k0; k < k1; k++) {
        float wk = w[k] * keep;
        float gk = g[k];
        float mk = m[k] + j->one_m_b1 * (gk - m[k]);
        float vk = v[k] * j->fb2 + j->one_m_b2 * gk * gk;
        m[k] = mk;
        v[k] = vk;
        float denom = sqrtf(vk) / j->bc2_sqrt + j->eps;
        w[k] = wk - j->step_size * (mk / denom);
    }
}

void yf_adamw_step(yf_adamw *o, double lr) {
    o->step++;
    const double b1 = o->cfg.beta1, b2 = o->cfg.beta2;
    /* torch keeps the scalars in double and the tensor arithmetic in fp32 */
    const double bc1 = 1.0 - pow(b1, (double)o->step);
    const double bc2 = 1.0 - pow(b2, (double)o->step);
    adamw_job j = {.o = o, .lr = lr, .step_size = (float)(lr / bc1), .bc2_sqrt = (float)sqrt(bc2),
                   .eps = (float)o->cfg.eps, .one_m_b1 = (float)(1.0 - b1), .fb2 = (float)b2,
                   .one_m_b2 = (float)(1.0 - b2)};
    int64_t total = 0;
    for (int i = 0; i < o->n; i++) total += o->params[i].numel;
    j.piece = (int64_t)1 << 16; /* fewer than 65536 pieces even for all of a 2B model */
    while ((total + j.piece - 1) / j.piece + o->n >= 65536) j.piece *= 2;
    j.first = yf_malloc((size_t)(o->n + 1) * sizeof(int64_t));
    j.first[0] = 0;
    for (int i = 0; i < o->n; i++) j.first[i + 1] = j.first[i] + (o->params[i].numel + j.piece - 1) / j.piece;
    if (j.first[o->n] > 0) yf_par_for(j.first[o->n], adamw_piece, &j);
    free(j.first);
}

void yf_adamw_free(yf_adamw *o) {
    for (int i = 0; i < o->n; i++) {
        free(o->m[i]);
        free(o->v[i]);
    }
    free(o->m);
    free(o->v);
    free(o->params);
    free(o->decay);
    memset(o, 0, sizeof *o);
}

static char *prefixed(const char *prefix, const char *name) {
    size_t n = strlen(prefix) + strlen(name) + 2;
    char *s = yf_malloc(n);
    snprintf(s, n, "%s.%s", prefix, name);
    return s;
}

int yf_adamw_tensors(const yf_adamw *o, yf_tensor **ts) {
    *ts = yf_calloc((size_t)(2 * o->n + 1), sizeof **ts);
    for (int i = 0; i < o->n; i++) {
        for (int j = 0; j < 2; j++) {
            yf_tensor *t = &(*ts)[2 * i + j];
            t->name = prefixed(j ? "exp_avg_sq" : "exp_avg", o->params[i].name);
            t->dtype = YF_F32;
            t->ndim = o->params[i].ndim;
            memcpy(t->shape, o->params[i].shape, sizeof t->shape);
            t->data = j ? o->v[i] : o->m[i];
            t->nbytes = (size_t)o->params[i].numel * sizeof(float);
        }
    }
    return 2 * o->n;
}

void yf_adamw_free_tensors(yf_tensor *ts, int n) {
    for (int i = 0; i < n; i++) free(ts[i].name);
    free(ts);
}

int yf_adamw_restore(yf_adamw *o, const yf_table *tab, const char *what) {
    for (int i = 0; i < o->n; i++) {
        for (int j = 0; j < 2; j++) {
            char *name = prefixed(j ? "exp_avg_sq" : "exp_avg", o->params[i].name);
            const yf_tensor *t = yf_table_find(tab, name);
            int rc = 0;
            if (!t)
                rc = yf_errorf("%s: optimizer state lacks tensor '%s' (was the checkpoint written for other trainable parameters?)",
                               what, name);
            else if (t->dtype != YF_F32 || yf_tensor_numel(t) != o->params[i].numel)
                rc = yf_errorf("%s: optimizer tensor '%s' is %s with %lld elements, expected F32 with %lld", what, name,
                               yf_dtype_name(t->dtype), (long long)yf_tensor_numel(t), (long long)o->params[i].numel);
            else
                memcpy(j ? o->v[i] : o->m[i], t->data, (size_t)o->params[i].numel * sizeof(float));
            free(name);
            if (rc) return rc;
        }
    }
    return 0;
}
