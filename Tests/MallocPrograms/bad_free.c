// Bad frees through the preloaded malloc library: each mode frees one object wrongly and must
// stop the process with the pool's message (checked by scripts/run-malloc-tests), whichever path
// the free takes: the C object fast path (the allocating thread) or a remote free (another thread).
//   bad_free double|interior|remote-double
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *free_it(void *pointer) {
    free(pointer);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    char *object = malloc(24);
    if (!object) return 2;
    memset(object, 1, 24);
    // Through a volatile: the compiler must not see (and refuse) the bad free it is asked for.
    char *volatile laundered = object;
    if (strcmp(argv[1], "double") == 0) {
        free(object);
        free(laundered);
    } else if (strcmp(argv[1], "interior") == 0) {
        char *volatile inside = object + 8;
        free(inside);
    } else if (strcmp(argv[1], "remote-double") == 0) {
        pthread_t thread;
        // The first free is remote (one atomic or into the owner's slab), the second too.
        pthread_create(&thread, NULL, free_it, object);
        pthread_join(thread, NULL);
        pthread_create(&thread, NULL, free_it, laundered);
        pthread_join(thread, NULL);
    } else {
        return 2;
    }
    printf("bad_free %s: the process went on after a bad free\n", argv[1]);
    return 0;
}
