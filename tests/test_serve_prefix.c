/* The prefix cache in the server's scheduler (serve/prefix.h): requests
 * sharing a template compute it once, the same prompt twice computes
 * nothing again, an adapter's requests never reuse the base model's
 * entries, and every request's tokens are those of the scheduler without
 * the cache (greedy and sampled). */
#include "harness.h"
#include "serve/prefix.h"
#include "serve/sched.h"
#include "test_model_util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { NREQ = 5, MAXNEW = 6 };

typedef struct got {
    int64_t ids[MAXNEW];
    int64_t n;
    int done; /* atomic */
} got;

static bool on_token(void *ctx, int64_t id) {
    got *g = ctx;
    if (g->n < MAXNEW) g->ids[g->n++] = id;
    return false;
}

static void on_done(void *ctx, yf_finish why, const char *error) {
    (void)why, (void)error;
    __atomic_store_n(&((got *)ctx)->done, 1, __ATOMIC_RELEASE);
}

/* A request for max_new new tokens into g: greedy, or sampled (temperature
 * 0.8, top-k 20). */
static yf_sched_req make_req(got *g, int32_t adapter, const int64_t *prompt, int64_t plen, int64_t max_new,
                             uint64_t seed, bool sampled) {
    memset(g, 0, sizeof *g);
    yf_sched_req r = {.adapter = adapter, .prompt = prompt, .plen = plen, .max_new = max_new, .limit = plen + max_new,
                      .seed = seed, .stop_id = -1, .on_token = on_token, .on_done = on_done, .ctx = g};
    yf_sampling_default(&r.samp);
    if (sampled) r.samp.temperature = 0.8f, r.samp.top_k = 20;
    else r.samp.temperature = 0;
    return r;
}

/* Waits up to 60 s for request `what` (g) to finish. */
static void wait_done(const got *g, const char *what) {
    struct timespec ts = {0, 2000000};
    for (int w = 0; w < 30000 && !__atomic_load_n(&g->done, __ATOMIC_ACQUIRE); w++) nanosleep(&ts, NULL);
    CHECK(__atomic_load_n(&g->done, __ATOMIC_ACQUIRE), "request %s did not finish", what);
}

/* Runs the requests one after another (each waits for the previous: the
 * second of two sharing a template finds the first's entry). */
static void run_requests(yf_model *m, const yf_lora *const *los, float **const *dns, const yf_sched_prefix *px,
                         int64_t *const *prompt, const int64_t *plen, const int32_t *adapter, got *g,
                         yf_sched_stats *st) {
    yf_sched_opts o = {.parallel = 2, .max_queue = 4, .max_length = 128, .adapters = los, .dora_n = dns,
                       .nadapters = 1, .prefix = px};
    yf_sched *s = NULL;
    CHECK_OK(yf_sched_start(m, &o, &s));
    if (!s) return;
    for (int i = 0; i < NREQ; i++) {
        yf_sched_req r = make_req(&g[i], adapter[i], prompt[i], plen[i], MAXNEW, 7, i == 3); /* 3: sampled */
        bool full = false;
        CHECK_OK(yf_sched_submit(s, &r, &full));
        char what[16];
        snprintf(what, sizeof what, "%d", i);
        wait_done(&g[i], what);
    }
    yf_sched_get_stats(s, st);
    yf_sched_stop(s);
}

TEST(serve_prefix_cache_template_prefilled_once_same_ids) {
    yf_config cfg = yt_config(61, 32, 4, 48, 2, 128, true);
    yf_model *m = yt_random_model(&cfg, 21, YF_F32, 4.0f, NULL);
    CHECK(m != NULL, "%s", yf_last_error());
    if (!m) return;
    yf_lora lo;
    yf_lora_cfg lc = {.r = 4, .alpha = 8, .use_dora = true, .targets = (1u << YF_NPROJ) - 1};
    CHECK_OK(yf_lora_create(&lo, &cfg, &lc));
    yt_randomize_lora(&lo, 3, 0.2f);
    const yf_lora *los[1] = {&lo};
    float **dn[1] = {yf_dora_norms_new(m, &lo)};
    /* a 40-token template (an <eod> inside), then each request's own tokens:
     * 0 and 1 share the template; 2 is 0 again; 3 is 1 again, sampled; 4 is
     * 0 for the adapter */
    enum { TPL = 40 };
    int64_t own[2] = {9, 13}, plen[NREQ], *prompt[NREQ];
    int32_t adapter[NREQ] = {-1, -1, -1, -1, 0};
    int src[NREQ] = {0, 1, 0, 1, 0};
    for (int i = 0; i < NREQ; i++) {
        plen[i] = TPL + own[src[i]];
        prompt[i] = malloc((size_t)plen[i] * sizeof(int64_t));
        for (int64_t t = 0; t < plen[i]; t++)
            prompt[i][t] = t == 12 ? 3 : t < TPL ? 4 + (t * 7) % 50 : 4 + (t * 5 + 11 * src[i] + 3) % 53;
    }
    got plain[NREQ], cached[NREQ];
    yf_sched_stats s0, s1;
    run_requests(m, los, dn, NULL, prompt, plen, adapter, plain, &s0);
    yf_serve_prefix *px = yf_serve_prefix_new(m, los, 1, (size_t)64 << 20);
    run_requests(m, los, dn, yf_serve_prefix_hook(px), prompt, plen, adapter, cached, &s1);
    for (int i = 0; i < NREQ; i++) {
        int d = plain[i].n != cached[i].n;
        for (int64_t t = 0; t < plain[i].n && t < cached[i].n; t++) d += plain[i].ids[t] != cached[i].ids[t];
        CHECK(d == 0 && plain[i].n == MAXNEW, "request %d: %d of %lld ids differ with the prefix cache", i, d,
              (long long)plain[i].n);
    }
    yf_prefix_cache_stats st;
    yf_serve_prefix_get_stats(px, &st);
    /* computed: request 0 short of its last token, request 1's own part,
     * nothing for 2 and 3, request 4 whole (the adapter's own entry) */
    int64_t want = (plen[0] - 1) + (plen[1] - 1 - TPL) + (plen[4] - 1);
    CHECK(st.tokens_computed == want, "the cache computed %lld positions, expected %lld", (long long)st.tokens_computed,
          (long long)want);
    /* every slot got all of its prompt but the last token from the cache */
    int64_t loaded = 0;
    for (int i = 0; i < NREQ; i++) loaded += plen[i] - 1;
    CHECK(s1.prompt_tokens_reused == loaded && s0.prompt_tokens_reused == 0 && s1.prompt_tokens == s0.prompt_tokens,
          "%lld prompt tokens from the cache (expected %lld), %lld without it", (long long)s1.prompt_tokens_reused,
          (long long)loaded, (long long)s0.prompt_tokens_reused);
    /* a budget below one entry: nothing kept, the same tokens */
    yf_serve_prefix_free(px);
    px = yf_serve_prefix_new(m, los, 1, 1000);
    run_requests(m, los, dn, yf_serve_prefix_hook(px), prompt, plen, adapter, cached, &s1);
    for (int i = 0; i < NREQ; i++)
        CHECK(!memcmp(plain[i].ids, cached[i].ids, sizeof plain[i].ids), "request %d differs with a tiny budget", i);
    yf_serve_prefix_get_stats(px, &st);
    CHECK(st.entries == 0 && s1.prompt_tokens_reused == 0, "%lld entries kept within 1000 bytes", (long long)st.entries);
    yf_serve_prefix_free(px);
    for (int i = 0; i < NREQ; i++) free(prompt[i]);
    yf_dora_norms_free(dn[0], m);
    yf_lora_free(&lo);
    yf_model_free(m);
}

/* Requests admitted together (queued behind a long one) are prefilled in
 * one batched round: their prompts' rests after the cached template
 * together, the last tokens together. Every request's tokens equal those
 * of the requests run one at a time without the cache. */
enum { NTOG = 12, LONGNEW = 40 };

static void run_together(yf_model *m, const yf_lora *const *los, float **const *dns, const yf_sched_prefix *px,
                         int64_t *const *prompt, const int64_t *plen, const int32_t *adapter, got *g,
                         yf_sched_stats *st) {
    yf_sched_opts o = {.parallel = 16, .max_queue = 16, .max_length = 128, .adapters = los, .dora_n = dns,
                       .nadapters = 1, .prefix = px};
    yf_sched *s = NULL;
    CHECK_OK(yf_sched_start(m, &o, &s));
    if (!s) return;
    got blk;
    yf_sched_req rb = make_req(&blk, -1, prompt[0], 5, LONGNEW, 1, false), r[NTOG];
    bool full = false;
    CHECK_OK(yf_sched_submit(s, &rb, &full));
    for (int i = 0; i < NTOG; i++) {
        r[i] = make_req(&g[i], adapter[i], prompt[i], plen[i], MAXNEW, 7 + i, i % 5 == 3);
        CHECK_OK(yf_sched_submit(s, &r[i], &full));
    }
    for (int i = 0; i < NTOG; i++) {
        char what[16];
        snprintf(what, sizeof what, "%d", i);
        wait_done(&g[i], what);
    }
    wait_done(&blk, "ahead of them");
    yf_sched_get_stats(s, st);
    yf_sched_stop(s);
}

TEST(serve_requests_admitted_together_same_ids) {
    yf_config cfg = yt_config(61, 32, 4, 48, 2, 128, true);
    yf_model *m = yt_random_model(&cfg, 22, YF_F32, 4.0f, NULL);
    CHECK(m != NULL, "%s", yf_last_error());
    if (!m) return;
    yf_lora lo;
    yf_lora_cfg lc = {.r = 4, .alpha = 8, .use_dora = false, .targets = (1u << YF_NPROJ) - 1};
    CHECK_OK(yf_lora_create(&lo, &cfg, &lc));
    yt_randomize_lora(&lo, 5, 0.2f);
    const yf_lora *los[1] = {&lo};
    float **dn[1] = {yf_dora_norms_new(m, &lo)};
    /* a 40-token template, then own parts of 2..30 tokens (short and long
     * rests); every third request for the adapter */
    enum { TPL = 40 };
    int64_t plen[NTOG], *prompt[NTOG];
    int32_t adapter[NTOG];
    for (int i = 0; i < NTOG; i++) {
        plen[i] = TPL + 2 + (i * 7) % 29;
        adapter[i] = i % 3 == 2 ? 0 : -1;
        prompt[i] = malloc((size_t)plen[i] * sizeof(int64_t));
        for (int64_t t = 0; t < plen[i]; t++)
            prompt[i][t] = t == 12 ? 3 : t < TPL ? 4 + (t * 7) % 50 : 4 + (t * 5 + 11 * i + 3) % 53;
    }
    /* the reference: one request at a time, no cache (run_requests takes NREQ at a time) */
    got ref[NTOG], plain[NTOG], cached[NTOG];
    yf_sched_stats s0, s1, s2;
    for (int i0 = 0; i0 < NTOG; i0 += NREQ) {
        int64_t *pp[NREQ], pl[NREQ];
        int32_t ad[NREQ];
        for (int i = 0; i < NREQ; i++) {
            int k = i0 + i < NTOG ? i0 + i : NTOG - 1;
            pp[i] = prompt[k], pl[i] = plen[k], ad[i] = adapter[k];
        }
        got gg[NREQ];
        run_requests(m, los, dn, NULL, pp, pl, ad, gg, &s0);
        for (int i = 0; i < NREQ && i0 + i < NTOG; i++) ref[i0 + i] = gg[i];
    }
    run_together(m, los, dn, NULL, prompt, plen, adapter, plain, &s1);
    yf_serve_prefix *px = yf_serve_prefix_new(m, los, 1, (size_t)64 << 20);
    run_together(m, los, dn, yf_serve_prefix_hook(px), prompt, plen, adapter, cached, &s2);
    int bad = 0;
    for (int i = 0; i < NTOG; i++) {
        if (i % 5 == 3) continue; /* sampled: its seed differs from run_requests' */
        bad += plain[i].n != ref[i].n || memcmp(plain[i].ids, ref[i].ids, sizeof ref[i].ids) != 0;
        bad += cached[i].n != ref[i].n || memcmp(cached[i].ids, ref[i].ids, sizeof ref[i].ids) != 0;
    }
    for (int i = 0; i < NTOG; i++)
        bad += cached[i].n != plain[i].n || memcmp(cached[i].ids, plain[i].ids, sizeof plain[i].ids) != 0;
    CHECK(bad == 0, "%d requests admitted together differ from one at a time or across the prefix cache", bad);
    /* the 12 came in behind the first request: at most a few rounds, not one each */
    CHECK(s1.prefills <= 4 && s2.prefills <= 4, "prefill rounds: %lld without the cache, %lld with it (13 requests)",
          (long long)s1.prefills, (long long)s2.prefills);
    yf_prefix_cache_stats st;
    yf_serve_prefix_get_stats(px, &st);
    /* the template once for each adapter, then each request's own part (short of its last token) */
    int64_t want = 2 * TPL;
    for (int i = 0; i < NTOG; i++) want += plen[i] - 1 - TPL;
    CHECK(st.tokens_computed == want, "the cache computed %lld positions, expected %lld", (long long)st.tokens_computed,
          (long long)want);
    yf_serve_prefix_free(px);
    for (int i = 0; i < NTOG; i++) free(prompt[i]);
    yf_dora_norms_free(dn[0], m);
    yf_lora_free(&lo);
    yf_model_free(m);
}
