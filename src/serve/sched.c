/* sched: the scheduler thread (sched.h). */
#include "serve/sched.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/kernels.h"

typedef struct slot {
    yf_sched_req *req;  /* NULL: free (only past the occupied ones) */
    int64_t pos;        /* positions cached */
    int64_t doc_start;
    int64_t *hist;      /* [limit] prompt + new ids (repetition penalty) */
    int64_t nhist, nnew;
    yf_rng rng;
} slot;

struct yf_sched {
    yf_model *m;
    yf_sched_opts o;
    int64_t V, L;
    yf_layer_state *st;       /* [L] for `parallel` slots of max_length positions */
    yf_layer_state *view;     /* [L] scratch: a slot or a run of slots */
    slot *slots;              /* [parallel]; 0..nactive-1 occupied */
    int64_t nactive;
    float *logits;            /* [YF_ROWSTABLE_M, V] */
    int64_t *ids, *posb, *docb;
    int32_t *row;
    pthread_t thread;
    pthread_mutex_t mu;       /* guards what follows */
    pthread_cond_t cv;
    yf_sched_req *head, *tail;
    int64_t nqueued, nrunning; /* nrunning: admitted, not yet done (the thread's nactive, seen from outside) */
    bool stop, cancel_all;
    yf_sched_stats stats;
};

static bool cancelled(const yf_sched_req *r) { return __atomic_load_n(&r->cancel, __ATOMIC_ACQUIRE); }

/* Slots b .. b+n-1 of the batched cache as a cache of n sequences (one
 * sequence's view, whose arrays run on into the next slots'). */
static void slot_view(yf_sched *s, int64_t b) { yf_layer_states_slot(s->view, s->st, s->m, b); }

/* Moves slot `from`'s cache (its first n positions) and state into slot `to`. */
static void slot_move(yf_sched *s, int64_t to, int64_t from) {
    const yf_model *m = s->m;
    int64_t cap = s->st[0].cap, hd = m->hd, n = s->slots[from].pos;
    for (int64_t l = 0; l < s->L; l++) {
        for (int64_t h = 0; h < m->H; h++) {
            int64_t dst = (to * m->H + h) * cap * hd, src = (from * m->H + h) * cap * hd;
            memcpy(s->st[l].k + dst, s->st[l].k + src, (size_t)(n * hd) * sizeof(float));
            memcpy(s->st[l].v + dst, s->st[l].v + src, (size_t)(n * hd) * sizeof(float));
        }
        memcpy(s->st[l].a_prev + to * m->D, s->st[l].a_prev + from * m->D, (size_t)m->D * sizeof(float));
        memcpy(s->st[l].c_prev + to * m->D / 2, s->st[l].c_prev + from * m->D / 2, (size_t)(m->D / 2) * sizeof(float));
    }
    int64_t *hist = s->slots[to].hist;
    s->slots[to] = s->slots[from];
    s->slots[from].hist = hist; /* the buffers swap: each slot keeps one */
    s->slots[from].req = NULL;
}

/* Ends request r (on_done last: then it is the caller's again). */
static void finish(yf_sched *s, yf_sched_req *r, yf_finish why, const char *error) {
    pthread_mutex_lock(&s->mu);
    if (why == YF_FINISH_STOP || why == YF_FINISH_LENGTH) s->stats.processed++;
    else if (why == YF_FINISH_CANCELLED) s->stats.cancelled++;
    else s->stats.failed++;
    s->nrunning--;
    pthread_mutex_unlock(&s->mu);
    r->on_done(r->ctx, why, error);
}

/* Frees slot i (its request already finished): the last occupied slot moves in. */
static void slot_free(yf_sched *s, int64_t i) {
    s->slots[i].req = NULL;
    if (i != s->nactive - 1) slot_move(s, i, s->nactive - 1);
    s->nactive--;
}

/* Chooses slot i's next token from logits [V] and hands it over. Returns
 * -1 while the request goes on, else how it ended. */
static int emit(yf_sched *s, slot *sl, float *logits) {
    yf_sched_req *r = sl->req;
    const yf_sched_hook *h = r->hook;
    int64_t V = s->V, id;
    int64_t budget = r->max_new - sl->nnew < r->limit - sl->nhist ? r->max_new - sl->nnew : r->limit - sl->nhist;
    if (!h) {
        id = yf_sample(logits, V, &r->samp, sl->hist, sl->nhist, &sl->rng);
    } else if (r->samp.temperature == 0) {
        yf_sample_penalize(logits, V, &r->samp, sl->hist, sl->nhist); /* as yf_generate */
        id = h->pick(h->ctx, 0, logits, V, budget);
    } else {
        id = h->mask(h->ctx, 0, logits, V, budget) == 0 ? -1 : yf_sample(logits, V, &r->samp, sl->hist, sl->nhist, &sl->rng);
    }
    if (id < 0) return YF_FINISH_STOP;
    sl->hist[sl->nhist++] = id;
    sl->nnew++;
    if (h) h->advance(h->ctx, 0, id);
    bool stop = r->on_token(r->ctx, id);
    if (stop || id == r->stop_id || (h && h->done && h->done(h->ctx, 0))) return YF_FINISH_STOP;
    if (sl->nnew >= r->max_new || sl->nhist >= r->limit) return YF_FINISH_LENGTH;
    return -1;
}

/* Puts requests rs[0..n) (n <= YF_ROWSTABLE_M) into the slots from nactive
 * on and prefills their prompts together (each with the bits it gets
 * alone); each emits its first token. */
static void admit(yf_sched *s, yf_sched_req **rs, int64_t n) {
    const yf_sched_prefix *px = s->o.prefix;
    int64_t L = s->L, V = s->V, b0 = s->nactive;
    double t0 = yf_time(); /* the prefix store's work is the prefill's too */
    if (px && px->prepare) {
        int32_t ad[YF_ROWSTABLE_M];
        const int64_t *pr[YF_ROWSTABLE_M];
        int64_t pl[YF_ROWSTABLE_M];
        for (int64_t j = 0; j < n; j++) ad[j] = rs[j]->adapter, pr[j] = rs[j]->prompt, pl[j] = rs[j]->plen;
        px->prepare(px->ctx, n, ad, pr, pl);
    }
    yf_layer_state *views = yf_calloc((size_t)(n * L), sizeof *views);
    yf_prefill pf[YF_ROWSTABLE_M];
    int64_t n0[YF_ROWSTABLE_M];
    for (int64_t j = 0; j < n; j++) {
        yf_sched_req *r = rs[j];
        slot *sl = &s->slots[b0 + j];
        sl->req = r;
        sl->pos = 0;
        sl->doc_start = 0;
        sl->nnew = 0;
        memcpy(sl->hist, r->prompt, (size_t)r->plen * sizeof(int64_t));
        sl->nhist = r->plen;
        yf_rng_seed(&sl->rng, r->seed * 1000003ull); /* yf_generate's stream of sequence 0 */
        yf_layer_state *v = views + j * L;
        yf_layer_states_slot(v, s->st, s->m, b0 + j);
        yf_layer_states_restart(v, s->m);
        n0[j] = px ? px->lookup(px->ctx, r->adapter, r->prompt, r->plen, v, &sl->doc_start) : 0;
        if (n0[j] < 0 || n0[j] >= r->plen) n0[j] = 0;
        pf[j] = (yf_prefill){.st = v, .pos = n0[j], .doc_start = sl->doc_start, .ids = r->prompt + n0[j],
                             .len = r->plen - n0[j], .adapter = r->adapter, .logits = s->logits + j * V};
    }
    yf_row_adapters ra = {s->o.nadapters, s->o.adapters, s->o.dora_n, NULL};
    char *err[YF_ROWSTABLE_M] = {0};
    if (yf_model_prefill_batch(s->m, NULL, &ra, pf, n) != 0) /* then one by one: only a bad one fails */
        for (int64_t j = 0; j < n; j++)
            if (yf_model_prefill_batch(s->m, NULL, &ra, &pf[j], 1) != 0) err[j] = yf_strdup(yf_last_error());
    pthread_mutex_lock(&s->mu);
    s->stats.prefill_s += yf_time() - t0;
    s->stats.prefills++;
    for (int64_t j = 0; j < n; j++)
        if (!err[j]) s->stats.prompt_tokens += rs[j]->plen, s->stats.prompt_tokens_reused += n0[j];
    pthread_mutex_unlock(&s->mu);
    free(views);
    /* in order: a failed request leaves its slot, the next one moves down */
    for (int64_t j = 0; j < n; j++) {
        yf_sched_req *r = rs[j];
        if (err[j]) {
            s->slots[b0 + j].req = NULL;
            finish(s, r, YF_FINISH_ERROR, err[j]);
            free(err[j]);
            continue;
        }
        int64_t w = s->nactive;
        s->slots[b0 + j].pos = r->plen;
        s->slots[b0 + j].doc_start = pf[j].doc_start;
        if (w != b0 + j) slot_move(s, w, b0 + j);
        slot *sl = &s->slots[w];
        if (px && px->store) {
            slot_view(s, w);
            px->store(px->ctx, r->adapter, r->prompt, r->plen, s->view, sl->doc_start);
        }
        s->nactive++;
        int why = emit(s, sl, s->logits + j * V);
        pthread_mutex_lock(&s->mu);
        s->stats.generated_tokens++;
        pthread_mutex_unlock(&s->mu);
        if (why >= 0) {
            slot_free(s, w);
            finish(s, r, (yf_finish)why, NULL);
        }
    }
}

/* One decode step for slots b0 .. b0+n-1; how each ended (or -1) into why. */
static void step(yf_sched *s, int64_t b0, int64_t n, int *why) {
    for (int64_t i = 0; i < n; i++) {
        slot *sl = &s->slots[b0 + i];
        s->ids[i] = sl->hist[sl->nhist - 1];
        s->posb[i] = sl->pos;
        s->docb[i] = sl->doc_start;
        s->row[i] = sl->req->adapter;
    }
    yf_row_adapters ra = {s->o.nadapters, s->o.adapters, s->o.dora_n, s->row};
    slot_view(s, b0);
    double t0 = yf_time();
    int rc = yf_model_forward_cached_rows(s->m, &ra, s->view, 0, s->posb, s->docb, s->ids, n, 1, s->logits, true);
    pthread_mutex_lock(&s->mu);
    s->stats.decode_s += yf_time() - t0;
    s->stats.steps++;
    s->stats.step_rows += n;
    if (rc == 0) s->stats.generated_tokens += n;
    pthread_mutex_unlock(&s->mu);
    for (int64_t i = 0; i < n; i++) {
        slot *sl = &s->slots[b0 + i];
        if (rc) {
            why[i] = YF_FINISH_ERROR;
            continue;
        }
        sl->pos++;
        sl->doc_start = s->docb[i];
        why[i] = emit(s, sl, s->logits + i * s->V);
    }
}

/* Unlinks the queued requests that are cancelled (every one with all) onto
 * *dead (lock held). */
static void reap_queue(yf_sched *s, bool all, yf_sched_req **dead) {
    yf_sched_req **pp = &s->head, *last = NULL;
    while (*pp) {
        yf_sched_req *r = *pp;
        if (all || cancelled(r)) {
            *pp = r->next;
            r->next = *dead;
            *dead = r;
            s->nqueued--;
            s->nrunning--;
            s->stats.cancelled++;
        } else {
            last = r;
            pp = &r->next;
        }
    }
    s->tail = last;
}

static void *run(void *arg) {
    yf_sched *s = arg;
    int *why = yf_malloc((size_t)s->o.parallel * sizeof(int));
    pthread_mutex_lock(&s->mu);
    for (;;) {
        /* cancelled requests (all of them at shutdown) end first */
        bool all = s->cancel_all || s->stop;
        yf_sched_req *dead = NULL;
        reap_queue(s, all, &dead);
        s->cancel_all = false;
        pthread_mutex_unlock(&s->mu);
        for (yf_sched_req *r = dead, *nx; r; r = nx) {
            nx = r->next;
            r->on_done(r->ctx, YF_FINISH_CANCELLED, NULL);
        }
        for (int64_t i = s->nactive - 1; i >= 0; i--) {
            yf_sched_req *r = s->slots[i].req;
            if (!all && !cancelled(r)) continue;
            slot_free(s, i);
            finish(s, r, YF_FINISH_CANCELLED, NULL);
        }
        /* free slots take queued requests, prefilled together up to
         * YF_ROWSTABLE_M at a time */
        pthread_mutex_lock(&s->mu);
        while (s->nactive < s->o.parallel && s->head) {
            yf_sched_req *rs[YF_ROWSTABLE_M];
            int64_t k = 0;
            while (k < YF_ROWSTABLE_M && s->nactive + k < s->o.parallel && s->head) {
                yf_sched_req *r = rs[k++] = s->head;
                s->head = r->next;
                if (!s->head) s->tail = NULL;
                s->nqueued--;
            }
            pthread_mutex_unlock(&s->mu);
            admit(s, rs, k);
            pthread_mutex_lock(&s->mu);
        }
        if (s->stop && !s->head && s->nactive == 0) break;
        if (s->nactive == 0) {
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        /* one step for every occupied slot, YF_ROWSTABLE_M at a time; slots
         * are freed after all of them, from the back, so that the slot moving
         * into a hole has had its step */
        int64_t n = s->nactive;
        for (int64_t b0 = 0; b0 < n; b0 += YF_ROWSTABLE_M)
            step(s, b0, n - b0 < YF_ROWSTABLE_M ? n - b0 : YF_ROWSTABLE_M, why + b0);
        const char *err = NULL;
        for (int64_t i = n - 1; i >= 0; i--) {
            if (why[i] < 0) continue;
            yf_sched_req *r = s->slots[i].req;
            if (why[i] == YF_FINISH_ERROR && !err) err = yf_last_error();
            slot_free(s, i);
            finish(s, r, (yf_finish)why[i], why[i] == YF_FINISH_ERROR ? err : NULL);
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    free(why);
    return NULL;
}

int yf_sched_start(yf_model *m, const yf_sched_opts *o, yf_sched **out) {
    const yf_config *c = yf_model_config(m);
    if (o->parallel < 1 || o->parallel > 1024) return yf_errorf("--parallel must be in [1, 1024], got %lld", (long long)o->parallel);
    if (o->max_queue < 0) return yf_errorf("--max-queue must be >= 0, got %lld", (long long)o->max_queue);
    if (o->max_length < 2 || o->max_length > c->max_position_embeddings)
        return yf_errorf("--max-length must be in [2, %lld] (the model's max_position_embeddings), got %lld",
                         (long long)c->max_position_embeddings, (long long)o->max_length);
    yf_sched *s = yf_calloc(1, sizeof *s);
    s->m = m;
    s->o = *o;
    s->V = c->vocab_size;
    s->L = c->num_hidden_layers;
    s->st = yf_layer_states_alloc(m, o->parallel, o->max_length);
    s->view = yf_calloc((size_t)s->L, sizeof *s->view);
    s->slots = yf_calloc((size_t)o->parallel, sizeof *s->slots);
    for (int64_t i = 0; i < o->parallel; i++) s->slots[i].hist = yf_malloc((size_t)o->max_length * sizeof(int64_t));
    s->logits = yf_malloc((size_t)(YF_ROWSTABLE_M * s->V) * sizeof(float));
    s->ids = yf_calloc(YF_ROWSTABLE_M, sizeof(int64_t));
    s->posb = yf_calloc(YF_ROWSTABLE_M, sizeof(int64_t));
    s->docb = yf_calloc(YF_ROWSTABLE_M, sizeof(int64_t));
    s->row = yf_calloc(YF_ROWSTABLE_M, sizeof(int32_t));
    s->stats.parallel = o->parallel;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        yf_errorf("serve: cannot start the scheduler thread");
        s->stop = true;
        yf_sched_stop(s);
        return -1;
    }
    *out = s;
    return 0;
}

void yf_sched_stop(yf_sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    bool running = !s->stop;
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (running) pthread_join(s->thread, NULL);
    yf_layer_states_free(s->st, s->m);
    for (int64_t i = 0; i < s->o.parallel; i++) free(s->slots[i].hist);
    free(s->slots), free(s->view), free(s->logits), free(s->ids), free(s->posb), free(s->docb), free(s->row);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

int yf_sched_submit(yf_sched *s, yf_sched_req *r, bool *full) {
    YF_CHECK(r->plen >= 1 && r->plen < r->limit && r->limit <= s->o.max_length && r->max_new >= 1);
    YF_CHECK(r->adapter >= -1 && r->adapter < s->o.nadapters && r->on_token && r->on_done);
    *full = false;
    r->next = NULL;
    r->cancel = false;
    pthread_mutex_lock(&s->mu);
    if (s->stop) {
        pthread_mutex_unlock(&s->mu);
        return yf_errorf("serve: shutting down");
    }
    /* every slot taken (counting those the queue will take) */
    r->deferred = s->nrunning >= s->o.parallel;
    if (r->deferred && s->nqueued >= s->o.max_queue) {
        s->stats.rejected++;
        pthread_mutex_unlock(&s->mu);
        *full = true;
        return yf_errorf("serve: all %lld slots are busy and %lld requests wait already", (long long)s->o.parallel,
                         (long long)s->nqueued);
    }
    if (r->deferred) s->stats.deferred++;
    if (s->tail) s->tail->next = r;
    else s->head = r;
    s->tail = r;
    s->nqueued++;
    s->nrunning++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void yf_sched_cancel(yf_sched *s, yf_sched_req *r) {
    __atomic_store_n(&r->cancel, true, __ATOMIC_RELEASE);
    pthread_mutex_lock(&s->mu);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void yf_sched_cancel_all(yf_sched *s) {
    pthread_mutex_lock(&s->mu);
    s->cancel_all = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int64_t yf_sched_inflight(yf_sched *s) {
    pthread_mutex_lock(&s->mu);
    int64_t n = s->nrunning;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void yf_sched_get_stats(yf_sched *s, yf_sched_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    out->queued = s->nqueued;
    out->active = s->nrunning - s->nqueued;
    pthread_mutex_unlock(&s->mu);
}
