"""Example py: kernels for threadcenter: each public top-level function f(n: int) -> int.

    threadcenter-bench serve --python examples/workload.py     # kernels py:friendly, py:unfriendly

(needs a build with the `python` cargo feature). Both are deterministic: the same n gives the
same result, which the driver checks on every reply.
"""

import hashlib

# 64 KiB per update: hashlib releases the GIL while it hashes more than 2 KiB at once.
_BLOCK = bytes(range(256)) * 256
_MASK = (1 << 64) - 1


def friendly(n: int) -> int:
    """n SHA-256 updates of 64 KiB each: the hashing runs in C with the GIL released, so
    threads of one interpreter hash in parallel (thread-friendly)."""
    h = hashlib.sha256(n.to_bytes(8, "little"))
    for _ in range(max(1, n)):
        h.update(_BLOCK)
    return int.from_bytes(h.digest()[:8], "little")


def unfriendly(n: int) -> int:
    """n steps of xorshift64 in pure Python: bytecode that holds the GIL throughout, so threads
    of one interpreter take turns (thread-unfriendly)."""
    x = (n + 0x9E3779B97F4A7C15) & _MASK
    total = 0
    for _ in range(max(1, n)):
        x ^= (x << 13) & _MASK
        x ^= x >> 7
        x ^= (x << 17) & _MASK
        total = (total + x) & _MASK
    return total
