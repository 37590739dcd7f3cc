/* svg: a small line-chart writer for the training loss curve. */
#ifndef YF_SVG_H
#define YF_SVG_H

#include "base/util.h"

/* Writes an SVG line chart of y against x (n points, n >= 1) with axes, tick
 * labels and a title, atomically. Non-finite points are skipped. */
int yf_svg_line_chart(const char *path, const double *x, const double *y, int64_t n, const char *title,
                      const char *xlabel, const char *ylabel);

#endif
