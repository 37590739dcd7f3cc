/* yuanft params: not built yet (stub). */
#include <stdio.h>

#include "commands.h"

int cmd_params(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "yuanft params: not implemented yet\n");
    return 2;
}
