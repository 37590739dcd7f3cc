/* page: src/serve/page.html inside the binary. The assembler's .incbin
 * copies the file's bytes (the Makefile makes page.o depend on it, and runs
 * the compiler from the repository root, where the path is resolved). */
#include "serve/page.h"

__asm__(".section .rodata\n"
        ".balign 16\n"
        ".globl yf_page_html_bytes\n"
        ".hidden yf_page_html_bytes\n"
        "yf_page_html_bytes:\n"
        ".incbin \"src/serve/page.html\"\n"
        ".byte 0\n"
        ".previous\n");

extern const char yf_page_html_bytes[];

const char *yf_serve_page(void) { return yf_page_html_bytes; }
