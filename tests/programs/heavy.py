"""An allocation-heavy Python workload for tests/preload.rs.

stdout: the results, which must be the same with and without LD_PRELOAD.
stderr: how the process was served, for the test to check: whether libshardalloc.so is mapped
(from /proc/self/maps) and, when the library's mi_is_in_heap_region is visible, how many of a
sample of Python objects live in shardalloc's memory (run with PYTHONMALLOC=malloc, every
object comes from malloc).
"""
import ctypes
import hashlib
import json
import sys


def digest(text):
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dicts_and_lists():
    table = {}
    for i in range(60000):
        key = "key-%d-%s" % (i, "x" * (i % 37))
        table[key] = [i, i * i, str(i) * (1 + i % 5), {"n": i, "odd": i % 2 == 1}]
    # delete a third, then refill: freed blocks get reused
    for i in range(0, 60000, 3):
        del table["key-%d-%s" % (i, "x" * (i % 37))]
    for i in range(20000):
        table["new-%d" % i] = tuple(range(i % 50))
    total = sum(len(v) for v in table.values())
    return "dicts: %d keys, %d items, %s" % (len(table), total, digest(repr(sorted(table)[:500])))


def strings():
    parts = []
    for i in range(80000):
        parts.append(("%x" % (i * 2654435761 % 2**32)).upper() * (1 + i % 7))
    text = "|".join(parts)
    words = text.split("|")
    joined = "".join(reversed(words))
    counts = {}
    for ch in joined:
        counts[ch] = counts.get(ch, 0) + 1
    return "strings: %d chars, %s, %s" % (len(text), digest(joined), sorted(counts.items())[:4])


def json_round_trip():
    doc = {
        "rows": [
            {"id": i, "name": "row %d" % i, "tags": ["t%d" % (i % 11), "u%d" % (i % 13)],
             "values": [i / 7.0, i * 3, None, i % 2 == 0]}
            for i in range(25000)
        ]
    }
    text = json.dumps(doc, sort_keys=True)
    back = json.loads(text)
    assert back == doc
    again = json.dumps(back, sort_keys=True, indent=1)
    return "json: %d bytes, %d indented, %s" % (len(text), len(again), digest(again))


def big_buffers():
    # sizes from a few KiB to several MiB: the medium, large and huge paths
    chunks = [bytearray(b"%d" % i) * (1 << (i % 20)) for i in range(200)]
    grown = bytearray()
    for c in chunks[:60]:
        grown += c
    return "buffers: %d total, %d grown" % (sum(len(c) for c in chunks), len(grown))


def report_serving():
    with open("/proc/self/maps") as maps:
        mapped = any("libshardalloc.so" in line for line in maps)
    print("maps: libshardalloc.so %s" % ("mapped" if mapped else "not mapped"), file=sys.stderr)
    try:
        in_heap = ctypes.CDLL(None).mi_is_in_heap_region
    except AttributeError:
        print("heap: mi_is_in_heap_region not found", file=sys.stderr)
        return
    in_heap.restype = ctypes.c_bool
    in_heap.argtypes = [ctypes.c_void_p]
    # from 2 characters: "" and 1-character strings are static objects
    sample = [[i] * (i % 300) for i in range(1000)] + ["s" * (i + 2) for i in range(1000)]
    served = sum(1 for obj in sample if in_heap(id(obj)))
    print("heap: %d of %d objects in shardalloc" % (served, len(sample)), file=sys.stderr)


def main():
    for step in (dicts_and_lists, strings, json_round_trip, big_buffers):
        print(step())
    report_serving()


main()
