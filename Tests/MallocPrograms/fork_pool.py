# Python's multiprocessing with the fork start method while threads of the parent allocate,
# under LD_PRELOAD=libBuddyPoolsMalloc.so and PYTHONMALLOC=malloc: the common way a threaded
# Python program forks. Each worker computes a known result on pool memory (checked through
# the preloaded library); a worker that inherited a held lock would hang (the pool's map has a
# timeout) or crash. Prints the total and exits 0 when every result and check held.
# A real-program check, not the race's test: Python forks holding the GIL, so its other threads
# are seldom inside malloc at that moment (it passed 3 of 3 runs without the fork gate);
# fork_storm.c is the test that fails without it.
import ctypes
import multiprocessing
import sys
import threading

pool_of = ctypes.CDLL(None).buddypools_pool_of
pool_of.restype = ctypes.c_char_p
pool_of.argtypes = [ctypes.c_void_p]


def churn(stop):
    # Objects of many sizes, made and dropped, so the thread is often inside the allocator.
    while not stop.is_set():
        junk = [str(n) * (n % 97) for n in range(2000)]
        junk.append(bytearray(1 << (len(junk) % 21)))
        del junk


def work(count):
    words = {str(n): str(n * 7) for n in range(count)}
    in_pool = all(pool_of(id(key)) is not None for key in list(words)[::500])
    return sum(len(value) for value in words.values()) if in_pool else -1


if __name__ == "__main__":
    stop = threading.Event()
    threads = [threading.Thread(target=churn, args=(stop,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    tasks = [20000 + n for n in range(48)]
    context = multiprocessing.get_context("fork")
    with context.Pool(4, maxtasksperchild=3) as workers:  # new forks throughout the run
        results = workers.map_async(work, tasks, chunksize=1).get(timeout=120)
    stop.set()
    for thread in threads:
        thread.join()
    expected = [sum(len(str(n * 7)) for n in range(count)) for count in tasks]
    print("fork_pool:", len(results), "tasks in forked workers,", sum(results), "digits")
    sys.exit(0 if results == expected else 1)
