/* yuanft generate: not built yet (stub). */
#include <stdio.h>

#include "commands.h"

int cmd_generate(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "yuanft generate: not implemented yet\n");
    return 2;
}
