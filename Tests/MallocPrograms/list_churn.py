# Lists of strings built and dropped: 3000 lists of 100-5000 strings, 400 kept at a time.
# docs/benchmarks.md times it under each malloc (PYTHONMALLOC=malloc) for fit=buddy against
# fit=exact. Prints the strings kept at the end (a known answer for a given seed).
import random
random.seed(5)
keep = []
for i in range(3000):
    n = random.randint(100, 5000)
    keep.append([str(j) * (j % 7) for j in range(n)])
    if len(keep) > 400:
        keep.pop(random.randrange(len(keep)))
print(sum(len(x) for x in keep))
