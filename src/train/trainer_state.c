/* trainer_state: a training run's checkpoints: writing checkpoint-N
 * (weights, optimizer, scheduler, RNG, trainer_state.json) crash-safely, and
 * resuming from one to the identical result. */
#include "train/trainer_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/safetensors.h"

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}
static void rm_rf(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void fsync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static char *hex_u64(uint64_t v) {
    char *s = yf_malloc(20);
    snprintf(s, 20, "%016llx", (unsigned long long)v);
    return s;
}

/* ---- checkpoints -------------------------------------------------------------- */

cJSON *yf_trun_state_json(const yf_trun *r) {
    const yf_train_args *a = r->a;
    cJSON *o = cJSON_CreateObject();
    /* the fields of transformers' TrainerState */
    if (r->has_best) cJSON_AddNumberToObject(o, "best_metric", r->best_metric);
    else cJSON_AddNullToObject(o, "best_metric");
    if (r->best_ckpt) cJSON_AddStringToObject(o, "best_model_checkpoint", r->best_ckpt);
    else cJSON_AddNullToObject(o, "best_model_checkpoint");
    cJSON_AddNumberToObject(o, "epoch", r->epoch);
    cJSON_AddNumberToObject(o, "eval_steps", (double)r->eval_steps);
    cJSON_AddNumberToObject(o, "global_step", (double)r->global_step);
    cJSON_AddFalseToObject(o, "is_hyper_param_search");
    cJSON_AddBoolToObject(o, "is_local_process_zero", !r->dist || r->dist->local_rank == 0);
    cJSON_AddBoolToObject(o, "is_world_process_zero", r->rank == 0);
    cJSON_AddItemToObject(o, "log_history", cJSON_Duplicate(r->log_history, 1));
    cJSON_AddNumberToObject(o, "logging_steps", (double)a->logging_steps);
    cJSON_AddNumberToObject(o, "max_steps", (double)r->total_steps);
    cJSON_AddNumberToObject(o, "num_input_tokens_seen", 0);
    cJSON_AddNumberToObject(o, "num_train_epochs", (double)r->n_epochs);
    cJSON_AddNumberToObject(o, "save_steps", (double)a->save_steps);
    if (a->early_stopping_patience > 0) {
        /* as transformers >= 4.41 keeps a stateful callback's state */
        cJSON *sc = cJSON_AddObjectToObject(o, "stateful_callbacks"), *es = cJSON_AddObjectToObject(sc, "EarlyStoppingCallback");
        cJSON *args = cJSON_AddObjectToObject(es, "args"), *attr = cJSON_AddObjectToObject(es, "attributes");
        cJSON_AddNumberToObject(args, "early_stopping_patience", (double)a->early_stopping_patience);
        cJSON_AddNumberToObject(args, "early_stopping_threshold", a->early_stopping_threshold);
        cJSON_AddNumberToObject(attr, "early_stopping_patience_counter", (double)r->patience_counter);
    }
    cJSON_AddNumberToObject(o, "total_flos", 0);
    cJSON_AddNumberToObject(o, "train_batch_size", (double)a->batch_size);
    cJSON_AddNullToObject(o, "trial_name");
    cJSON_AddNullToObject(o, "trial_params");
    /* what an exact resume needs beyond HF's fields */
    cJSON *y = cJSON_AddObjectToObject(o, "yuanft");
    cJSON_AddNumberToObject(y, "epoch_index", (double)r->epoch_index);
    cJSON_AddNumberToObject(y, "micro_batches_done_in_epoch", (double)r->micro_in_epoch);
    cJSON_AddNumberToObject(y, "num_examples", (double)r->n);
    cJSON_AddNumberToObject(y, "per_device_train_batch_size", (double)a->batch_size);
    cJSON_AddNumberToObject(y, "gradient_accumulation_steps", (double)a->grad_accum);
    /* micro_batches_done_in_epoch counts global micro-batches of batch * world_size rows */
    cJSON_AddNumberToObject(y, "world_size", (double)r->world);
    char *seed = hex_u64(a->seed);
    cJSON_AddStringToObject(y, "seed", seed);
    free(seed);
    cJSON_AddBoolToObject(y, "shuffle", a->shuffle);
    cJSON_AddNumberToObject(y, "total_loss", r->total_loss);
    cJSON_AddNumberToObject(y, "loss_since_log", r->loss_since_log);
    cJSON_AddNumberToObject(y, "last_logged_step", (double)r->last_logged_step);
    if (r->has_best) cJSON_AddNumberToObject(y, "best_global_step", (double)r->best_step);
    cJSON_AddItemToObject(y, "step_losses", cJSON_CreateDoubleArray(r->step_loss ? r->step_loss : (double[]){0},
                                                                     (int)r->global_step));
    return o;
}

int yf_trun_write_json(const char *dir, const char *name, cJSON *o) {
    char *path = yf_path_join(dir, name), *text = cJSON_Print(o);
    size_t len = strlen(text);
    text = yf_realloc(text, len + 2);
    text[len] = '\n', text[len + 1] = 0;
    int rc = yf_write_file_atomic(path, text, len + 1);
    free(text);
    free(path);
    return rc;
}

static int write_state_files(const yf_trun *r, const char *dir) {
    /* optimizer moments */
    yf_tensor *ts;
    int nt = yf_adamw_tensors(&r->opt, &ts);
    char *opath = yf_path_join(dir, "optimizer.safetensors");
    char step[32];
    snprintf(step, sizeof step, "%lld", (long long)r->opt.step);
    const char *meta[] = {"format", "pt", "step", step, NULL};
    int rc = yf_st_save(opath, ts, nt, meta);
    free(opath);
    yf_adamw_free_tensors(ts, nt);
    if (rc) return rc;

    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "lr_scheduler_type", yf_sched_name(r->sched.kind));
    cJSON_AddNumberToObject(s, "last_step", (double)r->global_step);
    cJSON_AddNumberToObject(s, "optimizer_step", (double)r->opt.step);
    cJSON_AddNumberToObject(s, "learning_rate", r->sched.lr0);
    cJSON_AddNumberToObject(s, "warmup_steps", (double)r->sched.warmup);
    cJSON_AddNumberToObject(s, "total_steps", (double)r->sched.total);
    rc = yf_trun_write_json(dir, "scheduler.json", s);
    cJSON_Delete(s);
    if (rc) return rc;

    cJSON *g = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(g, "dropout_rng");
    for (int i = 0; i < 4; i++) {
        char *h = hex_u64(r->dropout_rng.s[i]);
        cJSON_AddItemToArray(arr, cJSON_CreateString(h));
        free(h);
    }
    rc = yf_trun_write_json(dir, "rng_state.json", g);
    cJSON_Delete(g);
    if (rc) return rc;

    cJSON *st = yf_trun_state_json(r);
    rc = yf_trun_write_json(dir, "trainer_state.json", st);
    cJSON_Delete(st);
    return rc;
}

/* OUTPUT_DIR/checkpoint-N, built in a temporary directory and renamed into
 * place, so a run killed mid-save leaves the earlier checkpoints intact. */
int yf_trun_save_checkpoint(yf_trun *r) {
    char name[64], tmpname[96];
    snprintf(name, sizeof name, "checkpoint-%lld", (long long)r->global_step);
    snprintf(tmpname, sizeof tmpname, ".%s.tmp.%d", name, (int)getpid());
    char *final = yf_path_join(r->a->output_dir, name), *tmp = yf_path_join(r->a->output_dir, tmpname);
    int rc = 0;
    rm_rf(tmp);
    if (yf_mkdir_p(tmp) || r->h->save(r->h->ctx, tmp) || write_state_files(r, tmp)) rc = -1;
    if (rc == 0) {
        fsync_dir(tmp);
        char *old = NULL;
        if (yf_dir_exists(final)) {
            /* re-saving a step (e.g. after a resume): move the old one aside first */
            size_t n = strlen(final) + 32;
            old = yf_malloc(n);
            snprintf(old, n, "%s.old.%d", final, (int)getpid());
            if (rename(final, old) != 0) rc = yf_errorf("%s: cannot move aside: %s", final, strerror(errno));
        }
        if (rc == 0 && rename(tmp, final) != 0) rc = yf_errorf("%s: cannot rename checkpoint into place: %s", final, strerror(errno));
        if (old) {
            if (rc == 0) rm_rf(old);
            free(old);
        }
        fsync_dir(r->a->output_dir);
    }
    if (rc) rm_rf(tmp);
    free(final);
    free(tmp);
    return rc;
}

int yf_latest_checkpoint(const char *output_dir, char **out) {
    *out = NULL;
    DIR *d = opendir(output_dir);
    if (!d) return yf_errorf("%s: cannot open output directory to find the latest checkpoint: %s", output_dir, strerror(errno));
    long long best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, "checkpoint-", 11) != 0) continue;
        long long s = strtoll(e->d_name + 11, &end, 10);
        if (*end || end == e->d_name + 11 || s <= best) continue;
        char *dir = yf_path_join(output_dir, e->d_name), *st = yf_path_join(dir, "trainer_state.json");
        if (yf_file_exists(st)) best = s;
        free(st);
        free(dir);
    }
    closedir(d);
    if (best < 0) return yf_errorf("%s: no checkpoint-N directory with trainer_state.json to resume from", output_dir);
    char name[64];
    snprintf(name, sizeof name, "checkpoint-%lld", best);
    *out = yf_path_join(output_dir, name);
    return 0;
}

static int load_json(const char *dir, const char *name, cJSON **out) {
    char *path = yf_path_join(dir, name), *text = NULL;
    int rc = yf_read_file(path, &text, NULL);
    if (rc == 0) {
        *out = cJSON_Parse(text);
        if (!*out) rc = yf_errorf("%s: not valid JSON", path);
    }
    free(text);
    free(path);
    return rc;
}

static int json_int(const cJSON *o, const char *key, const char *file, int64_t *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble != floor(it->valuedouble))
        return yf_errorf("%s: field '%s' missing or not a non-negative integer", file, key);
    *v = (int64_t)it->valuedouble;
    return 0;
}

static int json_num(const cJSON *o, const char *key, const char *file, double *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(it)) return yf_errorf("%s: field '%s' missing or not a number", file, key);
    *v = it->valuedouble;
    return 0;
}

static int parse_hex(const cJSON *it, uint64_t *v) {
    if (!cJSON_IsString(it)) return -1;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(it->valuestring, &end, 16);
    if (errno || *end || end == it->valuestring) return -1;
    *v = x;
    return 0;
}

/* The best metric, its checkpoint and the early-stopping count, so that a
 * resumed run keeps choosing against the best evaluation before the break. */
static int restore_best(yf_trun *r, const cJSON *st, const cJSON *y, const char *spath) {
    const cJSON *bm = cJSON_GetObjectItemCaseSensitive(st, "best_metric");
    const cJSON *bc = cJSON_GetObjectItemCaseSensitive(st, "best_model_checkpoint");
    if (bm && !cJSON_IsNull(bm) && !cJSON_IsNumber(bm)) return yf_errorf("%s: 'best_metric' is neither a number nor null", spath);
    if (bc && !cJSON_IsNull(bc) && !cJSON_IsString(bc))
        return yf_errorf("%s: 'best_model_checkpoint' is neither a string nor null", spath);
    r->has_best = cJSON_IsNumber(bm);
    if (r->has_best) r->best_metric = bm->valuedouble;
    free(r->best_ckpt);
    r->best_ckpt = cJSON_IsString(bc) ? yf_strdup(bc->valuestring) : NULL;
    r->best_step = 0;
    if (cJSON_GetObjectItemCaseSensitive(y, "best_global_step") && json_int(y, "best_global_step", spath, &r->best_step))
        return -1;
    r->patience_counter = 0;
    const cJSON *es = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(st, "stateful_callbacks"),
                                                       "EarlyStoppingCallback");
    const cJSON *attr = cJSON_GetObjectItemCaseSensitive(es, "attributes");
    if (cJSON_GetObjectItemCaseSensitive(attr, "early_stopping_patience_counter") &&
        json_int(attr, "early_stopping_patience_counter", spath, &r->patience_counter))
        return -1;
    return 0;
}

/* Restores position, losses, log history, RNG and optimizer from a checkpoint. */
int yf_trun_resume(yf_trun *r, const char *dir) {
    cJSON *st = NULL, *rng = NULL, *sch = NULL;
    yf_table tab;
    yf_table_init(&tab);
    char *opath = yf_path_join(dir, "optimizer.safetensors");
    char *spath = yf_path_join(dir, "trainer_state.json");
    int rc = -1;
    if (load_json(dir, "trainer_state.json", &st) || load_json(dir, "rng_state.json", &rng) ||
        load_json(dir, "scheduler.json", &sch))
        goto done;
    const cJSON *y = cJSON_GetObjectItemCaseSensitive(st, "yuanft");
    if (!cJSON_IsObject(y)) {
        yf_errorf("%s: no 'yuanft' resume section (not written by yuanft train?)", spath);
        goto done;
    }
    int64_t n_ex, bs, acc, opt_step, world = 1;
    if (json_int(st, "global_step", spath, &r->global_step) || json_num(st, "epoch", spath, &r->epoch) ||
        json_int(y, "epoch_index", spath, &r->epoch_index) ||
        json_int(y, "micro_batches_done_in_epoch", spath, &r->micro_in_epoch) ||
        json_int(y, "num_examples", spath, &n_ex) || json_int(y, "per_device_train_batch_size", spath, &bs) ||
        json_int(y, "gradient_accumulation_steps", spath, &acc) || json_num(y, "total_loss", spath, &r->total_loss) ||
        json_num(y, "loss_since_log", spath, &r->loss_since_log) ||
        json_int(y, "last_logged_step", spath, &r->last_logged_step) ||
        json_int(sch, "optimizer_step", "scheduler.json", &opt_step))
        goto done;
    if (cJSON_GetObjectItemCaseSensitive(y, "world_size") && json_int(y, "world_size", spath, &world)) goto done;
    if (world < 1) world = 1;
    /* the position in rows of the epoch's order, re-counted in this run's global
     * micro-batches: exact whenever the global batch (batch x ranks x
     * accumulation) is unchanged, whatever the number of ranks */
    int64_t rows_done = r->micro_in_epoch * bs * world;
    if (rows_done > r->n) rows_done = r->n;
    r->micro_in_epoch = (rows_done + r->gbs - 1) / r->gbs;
    if (n_ex != r->n || bs * world * acc != r->gbs * r->a->grad_accum || (rows_done < r->n && rows_done % r->gbs != 0)) {
        if (r->logger)
            fprintf(stderr,
                    "yuanft train: warning: %s was written with %lld examples, global batch %lld (batch %lld x %lld ranks x "
                    "accumulation %lld); now %lld, %lld (%lld x %lld x %lld): the data order will not continue exactly\n",
                    dir, (long long)n_ex, (long long)(bs * world * acc), (long long)bs, (long long)world, (long long)acc,
                    (long long)r->n, (long long)(r->gbs * r->a->grad_accum), (long long)r->a->batch_size,
                    (long long)r->world, (long long)r->a->grad_accum);
    }
    const cJSON *lh = cJSON_GetObjectItemCaseSensitive(st, "log_history");
    if (cJSON_IsArray(lh)) {
        cJSON_Delete(r->log_history);
        r->log_history = cJSON_Duplicate(lh, 1);
    }
    if (restore_best(r, st, y, spath)) goto done;
    const cJSON *sl = cJSON_GetObjectItemCaseSensitive(y, "step_losses");
    int64_t i = 0;
    for (const cJSON *it = cJSON_IsArray(sl) ? sl->child : NULL; it && i < r->global_step; it = it->next, i++) {
        int64_t keep = r->global_step;
        r->global_step = i;
        yf_trun_push_step_loss(r, cJSON_IsNumber(it) ? it->valuedouble : NAN);
        r->global_step = keep;
    }
    for (; i < r->global_step; i++) {
        int64_t keep = r->global_step;
        r->global_step = i;
        yf_trun_push_step_loss(r, NAN);
        r->global_step = keep;
    }
    const cJSON *ra = cJSON_GetObjectItemCaseSensitive(rng, "dropout_rng");
    if (cJSON_GetArraySize(ra) != 4) {
        yf_errorf("%s/rng_state.json: 'dropout_rng' must be 4 hex strings", dir);
        goto done;
    }
    for (int k = 0; k < 4; k++)
        if (parse_hex(cJSON_GetArrayItem(ra, k), &r->dropout_rng.s[k])) {
            yf_errorf("%s/rng_state.json: 'dropout_rng' entry %d is not a hex string", dir, k);
            goto done;
        }
    if (yf_st_load(opath, &tab) || yf_adamw_restore(&r->opt, &tab, opath)) goto done;
    r->opt.step = opt_step;
    rc = 0;
done:
    yf_table_free(&tab);
    cJSON_Delete(st);
    cJSON_Delete(rng);
    cJSON_Delete(sch);
    free(opath);
    free(spath);
    return rc;
}


/* ---- save_total_limit ---------------------------------------------------------- */

typedef struct ckpt_entry {
    long long step;
    char *path;
} ckpt_entry;

static int cmp_ckpt(const void *pa, const void *pb) {
    const ckpt_entry *a = pa, *b = pb;
    return a->step < b->step ? -1 : a->step > b->step;
}

void yf_trun_rotate_checkpoints(yf_trun *r) {
    int64_t limit = r->a->save_total_limit;
    if (limit <= 0 || !r->writer) return;
    DIR *d = opendir(r->a->output_dir);
    if (!d) return;
    ckpt_entry *c = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, "checkpoint-", 11) != 0 || e->d_name[11] < '0' || e->d_name[11] > '9') continue;
        long long s = strtoll(e->d_name + 11, &end, 10);
        if (*end) continue; /* checkpoint-N.old.PID and the like are not checkpoints */
        char *path = yf_path_join(r->a->output_dir, e->d_name);
        if (!yf_dir_exists(path)) {
            free(path);
            continue;
        }
        if (n == cap) c = yf_realloc(c, (cap = cap ? 2 * cap : 16) * sizeof *c);
        c[n++] = (ckpt_entry){s, path};
    }
    closedir(d);
    qsort(c, n, sizeof *c, cmp_ckpt);
    /* the best moves to the second-newest place, so it outlives the older ones */
    size_t best = n;
    for (size_t i = 0; r->best_ckpt && i < n; i++)
        if (!strcmp(c[i].path, r->best_ckpt)) best = i;
    for (size_t i = best; n >= 2 && i + 2 < n; i++) {
        ckpt_entry t = c[i];
        c[i] = c[i + 1], c[i + 1] = t;
    }
    size_t keep = (size_t)limit;
    if (keep == 1 && best + 1 < n) keep = 2; /* the best is not the newest: both stay */
    for (size_t i = 0; i + keep < n; i++) rm_rf(c[i].path);
    for (size_t i = 0; i < n; i++) free(c[i].path);
    free(c);
}
