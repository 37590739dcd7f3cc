/* bench-constrain: the two make-bench rows of constrained decoding (issue 18;
 * docs/constrained-decoding.md). One JSON object a line on stdout.
 *
 *   build/bench-constrain mask --tokenizer FILE --data FILE [--n N]
 *     The full mask (yf_cstate_mask) over the real 135,040-row Yuan
 *     vocabulary at every step of the gold answers of the first N records
 *     (their tokens as training encodes them: realistic states), the budget
 *     that of extract's default 128 new tokens; each step timed 3 times (its
 *     median kept); median / p90 / max over the steps. For the span
 *     constraint, the schema constraint (strings free), and the greedy pick
 *     when the model agrees (the gold token on top of the logits) beside the
 *     argmax unconstrained greedy decoding takes over the same logits. Run it
 *     on one core (taskset): the constraint is single-threaded.
 *
 *   build/bench-constrain extract --model DIR [--adapter DIR] --data FILE
 *                                 [--n N] [--batch B] [--max-new-tokens M] [--rounds R]
 *     What extract does with the records' inputs (template none, as make
 *     demo): greedy batched generation unconstrained, then span-constrained,
 *     R interleaved rounds in one process. The constrained run's time in the
 *     constraint (the vocabulary's bytes and trie, each input's index, every
 *     call of the hook, less the argmax over the logits that unconstrained
 *     greedy decoding takes as well) over its wall time is the greedy path's
 *     overhead (also printed with that argmax counted in); the wall times
 *     and the tokens of both runs are printed beside it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/vocab_map.h"
#include "lora/lora.h"
#include "model/generate.h"
#include "model/sample.h"
#include "task/constrain.h"
#include "task/data.h"
#include "task/eval.h"

static const char *arg(int argc, char **argv, const char *name, const char *dflt) {
    for (int i = 2; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    return dflt;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p) {
    if (!n) return NAN;
    qsort(v, n, sizeof *v, cmp_d);
    size_t k = (size_t)(p * (double)(n - 1) + 0.5);
    return v[k];
}

static int die(void) {
    fprintf(stderr, "bench-constrain: %s\n", yf_last_error());
    return 1;
}

/* ---- mask ------------------------------------------------------------------ */

typedef struct series {
    double *us;
    size_t n, cap;
} series;

static void add(series *s, double us) {
    if (s->n == s->cap) s->us = yf_realloc(s->us, (s->cap = s->cap ? 2 * s->cap : 1024) * sizeof *s->us);
    s->us[s->n++] = us;
}

static void report(const char *what, series *s, int64_t rejected) {
    printf("{\"bench\": \"constrain-mask\", \"what\": \"%s\", \"steps\": %zu, \"median_us\": %.2f, \"p90_us\": %.2f, "
           "\"max_us\": %.2f, \"gold_rejected\": %lld}\n",
           what, s->n, pct(s->us, s->n, 0.5), pct(s->us, s->n, 0.9), pct(s->us, s->n, 1.0), (long long)rejected);
}

static int bench_mask(int argc, char **argv) {
    const char *tokp = arg(argc, argv, "--tokenizer", NULL), *data = arg(argc, argv, "--data", NULL);
    size_t nrec = (size_t)atol(arg(argc, argv, "--n", "100"));
    const int64_t V = 135040, MAXNEW = 128;
    if (!tokp || !data) return fprintf(stderr, "usage: bench-constrain mask --tokenizer FILE --data FILE [--n N]\n"), 2;
    yf_tokenizer *tok;
    yf_records recs;
    yf_encoder enc;
    if (yf_tokenizer_load(tokp, &tok) || yf_data_load(data, &recs) || yf_encoder_from_tokenizer(tok, &enc)) return die();
    double t0 = yf_time();
    yf_cvocab *v;
    if (yf_cvocab_build(tok, NULL, V, &v)) return die();
    printf("{\"bench\": \"constrain-vocab\", \"rows\": %lld, \"build_ms\": %.1f}\n", (long long)V, (yf_time() - t0) * 1e3);
    uint64_t *bits = yf_malloc((size_t)((V + 63) / 64) * sizeof *bits);
    float *logits = yf_calloc((size_t)V, sizeof *logits);
    for (int spans = 1; spans >= 0; spans--) {
        yf_constraint *c;
        if (yf_constraint_answer(yf_type_names, YF_N_TYPES, spans, &c)) return die();
        series mask = {0}, pick = {0}, argmax = {0};
        yf_sampling greedy;
        yf_sampling_default(&greedy);
        int64_t rejected = 0;
        for (size_t r = 0; r < recs.n && r < nrec; r++) {
            yf_cstate *s;
            if (yf_cstate_new(c, v, recs.r[r].input, strlen(recs.r[r].input), &s)) return die();
            char *ans = yf_malloc(strlen(recs.r[r].output) + 8);
            sprintf(ans, "%s<eod>", recs.r[r].output);
            int64_t *ids;
            size_t n;
            if (enc.encode(enc.ctx, ans, strlen(ans), &ids, &n)) return die();
            for (size_t t = 0; t < n; t++) {
                int64_t budget = MAXNEW - (int64_t)t;
                double rep[3];
                for (int k = 0; k < 3; k++) {
                    double a = yf_time();
                    yf_cstate_mask(s, budget, bits);
                    rep[k] = (yf_time() - a) * 1e6;
                }
                add(&mask, pct(rep, 3, 0.5));
                if (!(bits[ids[t] >> 6] >> (ids[t] & 63) & 1)) {
                    rejected++;
                    break;
                }
                if (spans) {
                    logits[ids[t]] = 1;
                    double a = yf_time();
                    int64_t p = yf_cstate_pick(s, logits, budget);
                    add(&pick, (yf_time() - a) * 1e6);
                    a = yf_time();
                    int64_t q = yf_sample(logits, V, &greedy, NULL, 0, NULL); /* what unconstrained greedy does */
                    add(&argmax, (yf_time() - a) * 1e6);
                    logits[ids[t]] = 0;
                    if (p != ids[t] || q != ids[t]) rejected++;
                }
                if (yf_cstate_advance(s, ids[t])) return die();
            }
            free(ids);
            free(ans);
            yf_cstate_free(s);
        }
        report(spans ? "full mask, spans (the résumé answer format, strings from the input)"
                     : "full mask, schema (the résumé answer format, strings free)",
               &mask, rejected);
        if (spans) report("greedy pick, the model agreeing (spans)", &pick, 0);
        if (spans) report("unconstrained greedy (yf_sample's argmax), the same logits", &argmax, 0);
        free(mask.us);
        free(pick.us);
        free(argmax.us);
        yf_constraint_free(c);
    }
    free(bits);
    free(logits);
    yf_cvocab_free(v);
    yf_records_free(&recs);
    yf_tokenizer_free(tok);
    return 0;
}

/* ---- extract ----------------------------------------------------------------- */

/* The constraint's hook with its time counted. */
typedef struct timed {
    yf_gen_hook in;
    double s;          /* in the hook */
    double argmax_s;   /* the argmax unconstrained greedy takes, timed again on the same logits */
    yf_sampling greedy;
} timed;

/* The pick includes the argmax unconstrained decoding also takes: that
 * argmax is timed beside it (and taken out of both sides of the ratio). */
static int64_t t_pick(void *ctx, int64_t seq, const float *logits, int64_t V, int64_t budget) {
    timed *t = ctx;
    double a = yf_time();
    int64_t r = t->in.pick(t->in.ctx, seq, logits, V, budget);
    double b = yf_time();
    yf_sample((float *)logits, V, &t->greedy, NULL, 0, NULL); /* greedy, no penalty: reads only */
    t->s += b - a;
    t->argmax_s += yf_time() - b;
    return r;
}
static int64_t t_mask(void *ctx, int64_t seq, float *logits, int64_t V, int64_t budget) {
    timed *t = ctx;
    double a = yf_time();
    int64_t r = t->in.mask(t->in.ctx, seq, logits, V, budget);
    t->s += yf_time() - a;
    return r;
}
static void t_advance(void *ctx, int64_t seq, int64_t id) {
    timed *t = ctx;
    double a = yf_time();
    t->in.advance(t->in.ctx, seq, id);
    t->s += yf_time() - a;
}
static bool t_done(void *ctx, int64_t seq) {
    timed *t = ctx;
    double a = yf_time();
    bool r = t->in.done(t->in.ctx, seq);
    t->s += yf_time() - a;
    return r;
}

static int bench_extract(int argc, char **argv) {
    const char *dir = arg(argc, argv, "--model", NULL), *adapter = arg(argc, argv, "--adapter", NULL),
               *data = arg(argc, argv, "--data", NULL);
    size_t nrec = (size_t)atol(arg(argc, argv, "--n", "64"));
    int64_t batch = atol(arg(argc, argv, "--batch", "32")), maxnew = atol(arg(argc, argv, "--max-new-tokens", "96"));
    int rounds = atoi(arg(argc, argv, "--rounds", "3"));
    if (!dir || !data) return fprintf(stderr, "usage: bench-constrain extract --model DIR --data FILE [...]\n"), 2;
    char *tokp = yf_path_join(dir, "tokenizer.model");
    yf_tokenizer *tok;
    yf_records recs;
    yf_encoder enc;
    yf_template tpl;
    yf_vocab_map vm;
    yf_model *m;
    yf_model_opts mo = {0};
    yf_lora lo;
    if (yf_tokenizer_load(arg(argc, argv, "--tokenizer", tokp), &tok) || yf_data_load(data, &recs) ||
        yf_encoder_from_tokenizer(tok, &enc) || yf_template_load("none", &tpl) ||
        yf_vocab_map_load(dir, yf_tokenizer_n_ids(tok), &vm) ||
        yf_model_load(dir, &mo, &m) || (adapter && yf_lora_load(adapter, yf_model_config(m), &lo)))
        return die();
    size_t n = recs.n < nrec ? recs.n : nrec;
    int64_t **prompts = yf_calloc(n, sizeof *prompts), *plen = yf_calloc(n, sizeof *plen);
    for (size_t i = 0; i < n; i++) {
        size_t np;
        if (yf_prompt_ids(&tpl, &enc, recs.r[i].input, &prompts[i], &np)) return die();
        plen[i] = (int64_t)np;
        yf_vocab_map_ids(&vm, prompts[i], plen[i]);
    }
    int64_t V = yf_model_config(m)->vocab_size;
    double *wn = yf_calloc((size_t)rounds, sizeof *wn), *ws = yf_calloc((size_t)rounds, sizeof *ws),
           *cs = yf_calloc((size_t)rounds, sizeof *cs), *am = yf_calloc((size_t)rounds, sizeof *am);
    int64_t tok_none = 0, tok_spans = 0, same = 0;
    yf_gen_out *a = yf_calloc(n, sizeof *a), *b = yf_calloc(n, sizeof *b);
    for (int r = 0; r < rounds; r++) {
        yf_gen_opts go;
        yf_gen_opts_default(&go);
        go.max_new_tokens = maxnew;
        go.batch = batch;
        go.stop_id = yf_vocab_to_model(&vm, enc.eod_id);
        double t0 = yf_time();
        if (yf_generate(m, adapter ? &lo : NULL, (const int64_t *const *)prompts, plen, (int64_t)n, &go, a, NULL)) return die();
        wn[r] = yf_time() - t0;
        /* the constrained run: what extract adds, all of it counted */
        t0 = yf_time();
        yf_constraint *c;
        yf_cvocab *v;
        if (yf_constraint_answer(yf_type_names, YF_N_TYPES, true, &c) || yf_cvocab_build(tok, &vm, V, &v)) return die();
        yf_cstate **st = yf_calloc(n, sizeof *st);
        for (size_t i = 0; i < n; i++)
            if (yf_cstate_new(c, v, recs.r[i].input, strlen(recs.r[i].input), &st[i])) return die();
        double setup = yf_time() - t0;
        timed th = {.s = 0};
        yf_sampling_default(&th.greedy);
        yf_cstate_hook(st, &th.in);
        yf_gen_hook hook = {&th, t_pick, t_mask, t_advance, t_done};
        go.hook = &hook;
        if (yf_generate(m, adapter ? &lo : NULL, (const int64_t *const *)prompts, plen, (int64_t)n, &go, b, NULL)) return die();
        ws[r] = yf_time() - t0 - th.argmax_s;
        cs[r] = setup + th.s - th.argmax_s;
        am[r] = th.argmax_s;
        tok_none = tok_spans = same = 0;
        for (size_t i = 0; i < n; i++) {
            tok_none += a[i].n, tok_spans += b[i].n;
            bool eq = a[i].n == b[i].n;
            for (int64_t k = 0; eq && k < a[i].n; k++) eq = a[i].ids[k] == b[i].ids[k];
            same += eq;
            yf_cstate_free(st[i]);
        }
        free(st);
        yf_cvocab_free(v);
        yf_constraint_free(c);
        yf_gen_out_free(a, (int64_t)n);
        yf_gen_out_free(b, (int64_t)n);
        fprintf(stderr, "round %d: unconstrained %.2f s, constrained %.2f s (constraint %.3f s)\n", r + 1, wn[r], ws[r], cs[r]);
    }
    double mwn = pct(wn, (size_t)rounds, 0.5), mws = pct(ws, (size_t)rounds, 0.5), mcs = pct(cs, (size_t)rounds, 0.5),
           mam = pct(am, (size_t)rounds, 0.5);
    printf("{\"bench\": \"constrain-extract\", \"records\": %zu, \"batch\": %lld, \"max_new_tokens\": %lld, \"rounds\": %d, "
           "\"wall_none_s\": %.3f, \"wall_spans_s\": %.3f, \"tokens_none\": %lld, \"tokens_spans\": %lld, "
           "\"same_answers\": %lld, \"constraint_s\": %.4f, \"argmax_s\": %.4f, \"overhead_pct\": %.2f, "
           "\"overhead_with_argmax_pct\": %.2f, \"vocab_rows\": %lld}\n",
           n, (long long)batch, (long long)maxnew, rounds, mwn, mws, (long long)tok_none, (long long)tok_spans,
           (long long)same, mcs, mam, 100 * mcs / mws, 100 * (mcs + mam) / mws, (long long)V);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "mask")) return bench_mask(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "extract")) return bench_extract(argc, argv);
    fprintf(stderr, "usage: bench-constrain mask|extract ... (see bench/constrain_bench.c)\n");
    return 2;
}
