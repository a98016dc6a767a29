// Topology queries through libnuma and the scheduler.
#define _GNU_SOURCE
#include "CNuma.h"

#include <errno.h>
#include <numa.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

int cnuma_available(void) { return numa_available() >= 0 ? 1 : 0; }

int cnuma_max_node(void) {
    if (numa_available() < 0) return 0;
    return numa_max_node();
}

int cnuma_node_present(int node) {
    if (numa_available() < 0) return node == 0;
    if (node < 0 || node > numa_max_node()) return 0;
    return numa_bitmask_isbitset(numa_nodes_ptr, (unsigned)node);
}

long long cnuma_node_size(int node, long long *free_bytes) {
    if (numa_available() < 0) {
        errno = ENOSYS;
        return -1;
    }
    return numa_node_size64(node, free_bytes);
}

int cnuma_distance(int a, int b) {
    if (numa_available() < 0) {
        if (a == b) return 10;
        errno = EINVAL;
        return -1;
    }
    int distance = numa_distance(a, b);  // 0 when libnuma cannot say
    if (distance > 0) return distance;
    errno = EINVAL;
    return -1;
}

// Copies the set bits of a libnuma bitmask into out[]; returns how many there were.
static int cnuma_bits_to_list(const struct bitmask *mask, int *out, int capacity) {
    int count = 0;
    for (unsigned long bit = 0; bit < mask->size; bit++) {
        if (!numa_bitmask_isbitset(mask, (unsigned)bit)) continue;
        if (count < capacity) out[count] = (int)bit;
        count++;
    }
    return count;
}

int cnuma_node_cpus(int node, int *cpus, int capacity) {
    if (numa_available() < 0) return node == 0 ? cnuma_allowed_cpus(cpus, capacity) : -1;
    struct bitmask *mask = numa_allocate_cpumask();
    if (mask == NULL) return -1;
    int result = -1;
    if (numa_node_to_cpus(node, mask) == 0) result = cnuma_bits_to_list(mask, cpus, capacity);
    numa_bitmask_free(mask);
    return result;
}

int cnuma_allowed_nodes(int *nodes, int capacity) {
    if (numa_available() < 0) {
        if (capacity > 0) nodes[0] = 0;
        return 1;
    }
    struct bitmask *mask = numa_get_mems_allowed();
    if (mask == NULL) return -1;
    int count = cnuma_bits_to_list(mask, nodes, capacity);
    numa_bitmask_free(mask);
    return count;
}

int cnuma_allowed_cpus(int *cpus, int capacity) {
    cpu_set_t *set = NULL;
    // The kernel may have more CPUs than CPU_SETSIZE: grow until sched_getaffinity accepts the size.
    for (int bits = 1024; bits <= (1 << 20); bits *= 2) {
        set = CPU_ALLOC(bits);
        if (set == NULL) return -1;
        size_t bytes = CPU_ALLOC_SIZE(bits);
        CPU_ZERO_S(bytes, set);
        if (sched_getaffinity(0, bytes, set) == 0) {
            int count = 0;
            for (int cpu = 0; cpu < bits; cpu++) {
                if (!CPU_ISSET_S(cpu, bytes, set)) continue;
                if (count < capacity) cpus[count] = cpu;
                count++;
            }
            CPU_FREE(set);
            return count;
        }
        CPU_FREE(set);
        if (errno != EINVAL) return -1;
    }
    return -1;
}

int cnuma_configured_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_CONF);
    if (n > 0) return (int)n;
    if (n == 0) errno = EINVAL;
    return -1;
}

int cnuma_has_preferred_many(void) {
    if (numa_available() < 0) return 0;
    return numa_has_preferred_many() > 0 ? 1 : 0;
}

int cnuma_current_cpu(void) { return sched_getcpu(); }
