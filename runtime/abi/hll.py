"""Python mirrors of the generated program's integer helpers: the 64-bit hash,
HyperLogLog ranks and the estimator (codegen_templates/xdp_program.c.j2).

They compute exactly what the kernel computes, bit for bit, so that the
reference interpreter keeps the same registers and T3 sees the same estimates.
The fixed point of the register sums is the manifest's
``constants.hll_scale_bits`` (``Manifest.constants``).
"""

from __future__ import annotations

import struct

M64 = (1 << 64) - 1


def fmix64(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & M64
    k ^= k >> 33
    return k


def xm_hash(data: bytes, seed: int) -> int:
    """xm_hash() over the 8-byte little-endian words of ``data``."""
    n = len(data) // 8
    h = (seed * 0x9E3779B97F4A7C15 + n) & M64
    for (w,) in struct.iter_unpack("<Q", data[: n * 8]):
        h = ((h ^ fmix64(w)) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & M64
    return fmix64(h)


def rank(w: int, top: int) -> int:
    """1 + trailing zeros of w, at most ``top`` (xm_hll_rank)."""
    if w == 0:
        return top
    n = ((w & -w).bit_length() - 1) + 1
    return min(n, top)


def hll_pow(r: int, scale_bits: int) -> int:
    """2^-r in ``scale_bits`` fixed point (xm_hll_pow)."""
    return 0 if r > scale_bits else (1 << scale_bits) >> r


def log2_fp(x: int) -> int:
    """log2(x) in 2^-16 units, exactly as xm_log2_fp()."""
    n = x.bit_length() - 1
    y = x >> (n - 31) if n >= 31 else x << (31 - n)
    r = n << 16
    for i in range(16):
        y = (y * y) >> 31
        if y >= (1 << 32):
            y >>= 1
            r |= 1 << (15 - i)
    return r


def estimate(z: int, zeros: int, m: int, am2: int, log2m_fp: int) -> int:
    """xm_hll_estimate(): raw HyperLogLog estimate, linear counting when small."""
    q = z >> 16
    if q == 0:
        q = 1
    e = ((am2 << 16) & M64) // q
    if e <= 5 * m // 2 and zeros > 0:
        e = ((m * (log2m_fp - log2_fp(zeros)) * 45426) & M64) >> 32
    return e


def estimate_np(z, zeros, m: int, am2: int, log2m_fp: int):
    """``estimate`` of many (z, zeros) at once (numpy uint64 arrays), bit for bit: every
    intermediate fits 64 bits (log2_fp squares a 32-bit y; the linear-counting product
    wraps mod 2^64 as ``& M64`` does). 0 where z is 0 (no register set)."""
    import numpy as np

    z = np.asarray(z, dtype=np.uint64)
    zeros = np.asarray(zeros, dtype=np.uint64)
    q = z >> np.uint64(16)
    q = np.where(q == 0, np.uint64(1), q)
    e = np.uint64((am2 << 16) & M64) // q
    small = (e <= np.uint64(5 * m // 2)) & (zeros > 0)
    if small.any():
        lin = (np.uint64(m) * (np.uint64(log2m_fp) - _log2_fp_np(np.where(zeros > 0, zeros, 1)))
               * np.uint64(45426)) >> np.uint64(32)
        e = np.where(small, lin, e)
    return np.where(z == 0, np.uint64(0), e)


def _log2_fp_np(x):
    """``log2_fp`` of a uint64 array of positive values."""
    import numpy as np

    x = x.astype(np.uint64)
    one = np.uint64(1)
    n = np.minimum(np.floor(np.log2(x.astype(np.float64))).astype(np.int64), 63)
    # float log2 can be one off near powers of two: make 2^n <= x < 2^(n+1)
    n = np.where((n < 63) & ((one << np.clip(n + 1, 0, 63).astype(np.uint64)) <= x), n + 1, n)
    n = np.where((one << np.clip(n, 0, 63).astype(np.uint64)) > x, n - 1, n)
    un = n.astype(np.uint64)
    right = np.where(n >= 31, n - 31, 0).astype(np.uint64)
    left = np.where(n < 31, 31 - n, 0).astype(np.uint64)
    y = (x >> right) << left                     # x scaled into [2^31, 2^32)
    r = un << np.uint64(16)
    for i in range(16):
        y = (y * y) >> np.uint64(31)
        big = y >= np.uint64(1 << 32)
        y = np.where(big, y >> one, y)
        r = np.where(big, r | np.uint64(1 << (15 - i)), r)
    return r
