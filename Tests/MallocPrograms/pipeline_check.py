# The end of a shell pipeline run under LD_PRELOAD=libBuddyPoolsMalloc.so: sums the numbers it
# reads (a known result) and checks, through the preloaded library, that its own objects live
# in a pool. Python with PYTHONMALLOC=malloc: its small objects go through malloc.
import ctypes
import sys

pool_of = ctypes.CDLL(None).buddypools_pool_of
pool_of.restype = ctypes.c_char_p
pool_of.argtypes = [ctypes.c_void_p]
numbers = [int(line) for line in sys.stdin]
words = {str(n): [n, str(n * 2)] for n in numbers}
in_pool = sum(1 for key in list(words)[::1000] if pool_of(id(key)) is not None)
print(sum(numbers), len(words), in_pool, pool_of(id(words)).decode())
sys.exit(0 if in_pool == len(list(words)[::1000]) else 1)
