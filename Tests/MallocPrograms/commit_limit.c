// A heap larger than the kernel will commit: run under strict overcommit
// (vm.overcommit_memory=2) with BUDDYPOOLS naming a pool above CommitLimit and
// libBuddyPoolsMalloc.so preloaded. The pool reserves its address space and commits a
// superblock at a time, so the program gets pool memory; a heap that committed its whole size
// at start would fail to be made and malloc would fall back to the system.
//   commit_limit MEBIBYTES POOL   (allocates that many 1 MiB blocks, writes them, checks each
//                                  is memory of the pool named POOL)
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    long count = argc > 1 ? atol(argv[1]) : 64;
    const char *expected = argc > 2 ? argv[2] : "heap";
    const char *(*pool_of)(const void *) = (const char *(*)(const void *))dlsym(RTLD_DEFAULT, "buddypools_pool_of");
    if (!pool_of) {
        fprintf(stderr, "commit_limit: libBuddyPoolsMalloc.so is not loaded\n");
        return 2;
    }
    void **blocks = calloc((size_t)count, sizeof(void *));
    if (!blocks) return 1;
    for (long i = 0; i < count; i++) {
        blocks[i] = malloc(1 << 20);
        if (!blocks[i]) {
            fprintf(stderr, "commit_limit: malloc of block %ld failed\n", i);
            return 1;
        }
        memset(blocks[i], (int)(i & 0xff), 1 << 20);
        const char *holder = pool_of(blocks[i]);
        if (!holder || strcmp(holder, expected) != 0) {
            fprintf(stderr, "commit_limit: block %ld is in %s, not in pool '%s'\n", i, holder ? holder : "no pool", expected);
            return 1;
        }
    }
    for (long i = 0; i < count; i++) {
        if (((unsigned char *)blocks[i])[(1 << 20) - 1] != (unsigned char)(i & 0xff)) return 1;
        free(blocks[i]);
    }
    free(blocks);
    printf("commit_limit: %ld MiB of pool '%s' memory\n", count, expected);
    return 0;
}
