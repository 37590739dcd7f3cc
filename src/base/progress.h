/* progress: a progress bar with ETA on stderr for long work (extraction,
 * evaluation). On a terminal it redraws one line; otherwise it prints a line
 * every 10% so logs stay short. */
#ifndef YF_PROGRESS_H
#define YF_PROGRESS_H

#include "base/util.h"

typedef struct yf_progress {
    const char *what;
    int64_t total, done;
    double t0, last_draw;
    int last_pct;
    bool tty, quiet;
} yf_progress;

void yf_progress_start(yf_progress *p, const char *what, int64_t total);
void yf_progress_add(yf_progress *p, int64_t n);
void yf_progress_end(yf_progress *p);

#endif
