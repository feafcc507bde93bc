"""How fast the page cache takes 1 MiB writes, by where they start (issue 15's upload rows).

Run as ``python3 _pagecache.py [--dir DIR] [--size MiB] [--rounds N] [--pause S]``: standard
library only. Each round writes SIZE MiB to a new file in DIR (not synced) in three ways, each
after the previous file is deleted, the file system synced and PAUSE seconds waited:

- ``aligned``: 1 MiB writes at 1 MiB boundaries (what nginx does with an upload's body when
  its ``client_body_buffer_size`` is 1m and no body came with the head);
- ``page-first``: the same, but each write's first 4 KiB goes alone, so that no write
  starts on a 64 KiB boundary with more than a page;
- ``64k``: 64 KiB writes.

On this machine kind (a VM whose balloon reports free memory to the host, ext4 with large
folios, Linux 6.18), 1 GiB takes 0.3-0.55 s ``aligned`` and ~0.1 s the other two ways once the
pause is 2 s or more; with no pause all three take ~0.1 s. It prints the median per way.
"""

import os
import statistics
import sys
import time

MiB = 1 << 20


def options(argv):
    opts = {"dir": "/tmp", "size": 1024, "rounds": 3, "pause": 2.5}
    for i in range(0, len(argv), 2):
        name, value = argv[i].lstrip("-"), argv[i + 1]
        opts[name] = value if name == "dir" else float(value)
    return opts


def write_file(path, size, way, block):
    """Write `size` bytes of `block` to a new `path` the given way; seconds taken."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    view = memoryview(block) if way != "64k" else memoryview(block)[: 64 << 10]
    t0 = time.perf_counter()
    done = 0
    while done < size:
        if way == "page-first" and done % (64 << 10) == 0:
            done += os.write(fd, view[:4096])
            done += os.write(fd, view[4096:])
        else:
            done += os.write(fd, view)
    took = time.perf_counter() - t0
    os.close(fd)
    return took


def main(argv):
    opts = options(argv)
    path = os.path.join(opts["dir"], f"pagecache-probe-{os.getpid()}")
    size, block = int(opts["size"]) * MiB, os.urandom(MiB)
    ways = ("aligned", "page-first", "64k")
    took = {way: [] for way in ways}
    try:
        for _ in range(int(opts["rounds"])):
            for way in ways:
                if os.path.exists(path):
                    os.unlink(path)
                os.sync()
                time.sleep(opts["pause"])
                took[way].append(write_file(path, size, way, block))
    finally:
        if os.path.exists(path):
            os.unlink(path)
    for way in ways:
        runs = " ".join(f"{t:.3f}" for t in took[way])
        print(f"{way:10} median {statistics.median(took[way]):.3f} s  ({runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
