// Swift cannot import MPI_COMM_WORLD and the MPI_DOUBLE / MPI_SUM handles (macros over
// Open MPI's predefined objects): these wrappers name them.
#ifndef COPENMPI_SHIM_H
#define COPENMPI_SHIM_H

#include <mpi.h>

static inline int cmpi_init(void) { return MPI_Init(NULL, NULL); }
static inline int cmpi_finalize(void) { return MPI_Finalize(); }

static inline int cmpi_rank(void) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
}

static inline int cmpi_size(void) {
    int size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    return size;
}

/// Sends `count` doubles to `destination` and receives as many from `source` (either may be
/// MPI_PROC_NULL, passed as -1).
static inline int cmpi_sendrecv_doubles(const double *send, int destination, double *receive, int source, int count) {
    return MPI_Sendrecv(send, count, MPI_DOUBLE, destination < 0 ? MPI_PROC_NULL : destination, 0,
                        receive, count, MPI_DOUBLE, source < 0 ? MPI_PROC_NULL : source, 0,
                        MPI_COMM_WORLD, MPI_STATUS_IGNORE);
}

static inline double cmpi_allreduce_max(double value) {
    double result = 0;
    MPI_Allreduce(&value, &result, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return result;
}

static inline double cmpi_allreduce_sum(double value) {
    double result = 0;
    MPI_Allreduce(&value, &result, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return result;
}

/// Gathers `count` doubles from every rank into `all` on rank 0 (rank order).
static inline int cmpi_gather_doubles(const double *mine, int count, double *all) {
    return MPI_Gather(mine, count, MPI_DOUBLE, all, count, MPI_DOUBLE, 0, MPI_COMM_WORLD);
}

static inline double cmpi_wtime(void) { return MPI_Wtime(); }

#endif
