#include "base/progress.h"

#include <stdlib.h>
#include <unistd.h>

static void fmt_time(char *buf, size_t cap, double s) {
    if (s < 0 || s > 1e7) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, cap, "%02ld:%02ld", t / 60, t % 60);
}

void yf_progress_start(yf_progress *p, const char *what, int64_t total) {
    p->what = what;
    p->total = total > 0 ? total : 1;
    p->done = 0;
    p->t0 = p->last_draw = yf_time();
    p->last_pct = -1;
    p->tty = isatty(2);
    p->quiet = getenv("YF_QUIET") != NULL;
}

static void draw(yf_progress *p, bool final) {
    double now = yf_time(), el = now - p->t0;
    double rate = el > 0 ? p->done / el : 0;
    char es[32], rs[32];
    fmt_time(es, sizeof es, el);
    fmt_time(rs, sizeof rs, rate > 0 ? (p->total - p->done) / rate : 0);
    int pct = (int)(100 * p->done / p->total);
    if (p->tty) {
        char bar[31];
        int fill = (int)(30 * p->done / p->total);
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r%s [%s] %lld/%lld %3d%% %s<%s %.2f/s ", p->what, bar, (long long)p->done,
                (long long)p->total, pct, es, rs, rate);
        if (final) fprintf(stderr, "\n");
    } else {
        fprintf(stderr, "%s: %lld/%lld (%d%%) elapsed %s eta %s\n", p->what, (long long)p->done, (long long)p->total,
                pct, es, rs);
    }
    p->last_draw = now;
    p->last_pct = pct;
}

void yf_progress_add(yf_progress *p, int64_t n) {
    p->done += n;
    if (p->quiet) return;
    int pct = (int)(100 * p->done / p->total);
    if (p->tty ? yf_time() - p->last_draw > 0.2 : pct / 10 != p->last_pct / 10) draw(p, false);
}

void yf_progress_end(yf_progress *p) {
    if (!p->quiet && (p->tty || p->last_pct != 100)) draw(p, true);
}
