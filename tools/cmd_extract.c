/* yuanft extract: not built yet (stub). */
#include <stdio.h>

#include "commands.h"

int cmd_extract(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "yuanft extract: not implemented yet\n");
    return 2;
}
