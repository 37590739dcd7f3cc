/* yuanft init: not built yet (stub). */
#include <stdio.h>

#include "commands.h"

int cmd_init(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "yuanft init: not implemented yet\n");
    return 2;
}
