/* trainer_state: a training run's checkpoints: writing checkpoint-N
 * (weights, optimizer, scheduler, RNG, trainer_state.json) crash-safely, and
 * resuming from one to the identical result. */
#include "train/trainer_internal.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
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

/* ---- temporary checkpoint directories -------------------------------------
 * A save builds OUTPUT_DIR/.checkpoint-N.tmp.PID and holds an flock on its
 * .writer file until the directory is renamed into place. A run killed
 * mid-save leaves the directory behind; the next run over the same output
 * directory removes it if its writer is gone: the lock can be taken (locks
 * die with their process, and with the machine), or, when killed before the
 * lock file existed, no process has the pid in its name. A live writer's
 * (another run over the same directory) is left alone. */

#define WRITER_FILE ".writer"

/* Creates dir/.writer and locks it; returns the descriptor (held until the
 * save ends), -1 with a message. */
static int lock_writer(const char *dir) {
    char *p = yf_path_join(dir, WRITER_FILE);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    int rc = fd >= 0 ? flock(fd, LOCK_EX | LOCK_NB) : -1;
    if (rc != 0) {
        yf_errorf("%s: cannot create and lock: %s", p, strerror(errno));
        if (fd >= 0) close(fd);
        fd = -1;
    } else {
        char line[64];
        int n = snprintf(line, sizeof line, "%d\n", (int)getpid());
        if (write(fd, line, (size_t)n) != n) { /* informational only: the lock is what counts */ }
    }
    free(p);
    return fd;
}

/* Whether the writer of a temporary directory (pid from its name) is gone. */
static bool writer_gone(const char *dir, long pid) {
    char *p = yf_path_join(dir, WRITER_FILE);
    int fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    free(p);
    if (fd >= 0) {
        bool gone = flock(fd, LOCK_EX | LOCK_NB) == 0;
        close(fd);
        return gone;
    }
    return pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

void yf_trun_remove_stale(const char *output_dir, bool verbose) {
    DIR *d = opendir(output_dir);
    if (!d) return; /* a new output directory */
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *nm = e->d_name, *t = strstr(nm, ".tmp.");
        /* .checkpoint-N.tmp.PID (a checkpoint) and .adapter.tmp.PID (lora.c's final pair) */
        if ((strncmp(nm, ".checkpoint-", 12) != 0 && strncmp(nm, ".adapter.tmp.", 13) != 0) || !t) continue;
        char *end;
        long pid = strtol(t + 5, &end, 10);
        if (*end || end == t + 5) continue;
        char *path = yf_path_join(output_dir, nm);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && writer_gone(path, pid)) {
            rm_rf(path);
            if (verbose)
                fprintf(stderr, "yuanft train: removed %s, left by a run that was killed while saving (pid %ld)\n",
                        path, pid);
        }
        free(path);
    }
    closedir(d);
}

static char *hex_u64(uint64_t v) {
    char *s = yf_malloc(20);
    snprintf(s, 20, "%016llx", (unsigned long long)v);
    return s;
}

static void put_bits(cJSON *o, const char *key, double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    char *h = hex_u64(u);
    cJSON_AddStringToObject(o, key, h);
    free(h);
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
    /* the two sums again, bit for bit: cJSON prints 15 digits when they read
     * back within an epsilon, which can drop the last bit, and a resumed run
     * must end with the uninterrupted run's train_loss exactly */
    put_bits(y, "total_loss_bits", r->total_loss);
    put_bits(y, "loss_since_log_bits", r->loss_since_log);
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
    int rc = 0, lock = -1;
    rm_rf(tmp);
    if (mkdir(tmp, 0755) != 0) rc = yf_errorf("%s: cannot create: %s", tmp, strerror(errno));
    if (rc == 0 && (lock = lock_writer(tmp)) < 0) rc = -1;
    if (rc == 0 && (r->h->save(r->h->ctx, tmp) || write_state_files(r, tmp))) rc = -1;
    if (rc == 0) {
        char *wf = yf_path_join(tmp, WRITER_FILE);
        unlink(wf); /* the lock stays held on the open file until the rename is done */
        free(wf);
        rc = yf_fsync_dir(tmp);
    }
    if (rc == 0) {
        if (yf_dir_exists(final)) {
            /* re-saving a step (e.g. after a resume): swap the two in one step,
             * so that checkpoint-N exists at every instant, then drop the old */
            if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE) != 0)
                rc = yf_errorf("%s: cannot swap the new checkpoint into place: %s", final, strerror(errno));
        } else if (rename(tmp, final) != 0) {
            rc = yf_errorf("%s: cannot rename checkpoint into place: %s", final, strerror(errno));
        }
        if (rc == 0) rc = yf_fsync_dir(r->a->output_dir);
    }
    rm_rf(tmp); /* after a swap: the old checkpoint; after a failure: the partial new one */
    if (lock >= 0) close(lock);
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
    int rc = yf_read_file_max(path, !strcmp(name, "trainer_state.json") ? YF_MAX_STATE_BYTES : YF_MAX_CONFIG_BYTES, &text,
                              NULL);
    if (rc == 0) {
        *out = cJSON_Parse(text);
        if (!*out) rc = yf_errorf("%s: not valid JSON", path);
    }
    free(text);
    free(path);
    return rc;
}

/* Counters are integers in [0, 2^53): checked as doubles before the cast
 * (a cast of 1e300 to int64 is undefined). */
static int json_int(const cJSON *o, const char *key, const char *file, int64_t *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(it) || !(it->valuedouble >= 0) || it->valuedouble >= 9007199254740992.0 ||
        it->valuedouble != floor(it->valuedouble))
        return yf_errorf("%s: field '%s' missing or not an integer in [0, 2^53)", file, key);
    *v = (int64_t)it->valuedouble;
    return 0;
}

static int json_num(const cJSON *o, const char *key, const char *file, double *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return yf_errorf("%s: field '%s' missing or not a finite number", file, key);
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

/* The exact value of a sum written by put_bits, when present (older
 * checkpoints have only the printed number, already read). */
static void get_bits(const cJSON *o, const char *key, double *v) {
    uint64_t u;
    double d;
    if (parse_hex(cJSON_GetObjectItemCaseSensitive(o, key), &u) != 0) return;
    memcpy(&d, &u, sizeof d);
    if (isfinite(d)) *v = d;
}

/* The counters of a resumed state against each other, the data and the
 * arguments, before anything is sized by them: the step count by the
 * per-step losses the file holds (one a step), the position in the epoch by
 * the checkpoint's own batches, every product in int64 with overflow checks.
 * A legitimate checkpoint of another batch size or data still resumes (with
 * the warning below); a forged one fails here with one line. */
static int check_position(const yf_trun *r, const char *spath, int64_t n_ex, int64_t bs, int64_t acc, int64_t world,
                          int64_t opt_step, const cJSON *losses) {
    int64_t gbs, micro;
    if (bs < 1 || acc < 1 || n_ex < 1 || world > 1 << 20 || __builtin_mul_overflow(bs, world, &gbs) ||
        __builtin_mul_overflow(gbs, acc, &micro))
        return yf_errorf("%s: batch %lld x %lld ranks x accumulation %lld over %lld examples is not a training run's "
                         "state", spath, (long long)bs, (long long)world, (long long)acc, (long long)n_ex);
    int64_t micro_per_epoch = n_ex / gbs + (n_ex % gbs != 0);
    int64_t nloss = cJSON_IsArray(losses) ? cJSON_GetArraySize(losses) : -1;
    if (r->global_step != nloss)
        return yf_errorf("%s: global_step %lld but %lld per-step losses: the file is damaged", spath,
                         (long long)r->global_step, (long long)nloss);
    if (r->micro_in_epoch > micro_per_epoch)
        return yf_errorf("%s: %lld micro-batches done in the epoch, but %lld examples make %lld", spath,
                         (long long)r->micro_in_epoch, (long long)n_ex, (long long)micro_per_epoch);
    if (r->epoch_index > r->global_step || r->last_logged_step > r->global_step || opt_step > r->global_step ||
        !(r->epoch >= 0) || r->epoch > (double)r->global_step + 1)
        return yf_errorf("%s: epoch %g (index %lld), last logged step %lld, optimizer step %lld do not fit global_step "
                         "%lld: the file is damaged", spath, r->epoch, (long long)r->epoch_index,
                         (long long)r->last_logged_step, (long long)opt_step, (long long)r->global_step);
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
    get_bits(y, "total_loss_bits", &r->total_loss);
    get_bits(y, "loss_since_log_bits", &r->loss_since_log);
    if (world < 1) world = 1;
    if (check_position(r, spath, n_ex, bs, acc, world, opt_step, cJSON_GetObjectItemCaseSensitive(y, "step_losses")))
        goto done;
    /* the position in rows of the epoch's order, re-counted in this run's global
     * micro-batches: exact whenever the global batch (batch x ranks x
     * accumulation) is unchanged, whatever the number of ranks */
    int64_t rows_done = r->micro_in_epoch * bs * world; /* <= micro_per_epoch * bs * world: no overflow (checked) */
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
