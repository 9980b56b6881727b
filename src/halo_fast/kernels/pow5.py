"""128-bit truncated powers of five for the Eisel-Lemire decimal-to-double algorithm.

Entry q (from SMALLEST_POWER to LARGEST_POWER) holds the 128 most significant bits
of 5**q, normalised so the top bit is set; for negative q the reciprocal is
computed with enough extra bits and rounded up, as the algorithm requires
(Lemire, "Number Parsing at a Gigabyte per Second", 2021). Built once with exact
Python integers; ~650 entries, about a millisecond.
"""

from __future__ import annotations

import numpy as np

SMALLEST_POWER = -342
LARGEST_POWER = 308


def _power_of_five_128(q: int) -> int:
    if q >= 0:
        value = 5**q
        shift = 128 - value.bit_length()  # normalise: top bit at bit 127
        return value << shift if shift >= 0 else value >> -shift
    divisor = 5**-q
    bits = divisor.bit_length()
    if q >= -27:
        return (1 << (bits + 127)) // divisor + 1
    scaled = (1 << (2 * bits + 128)) // divisor + 1
    return scaled >> max(0, scaled.bit_length() - 128)


def build_table() -> tuple[np.ndarray, np.ndarray]:
    """Return (high, low) uint64 arrays indexed by q - SMALLEST_POWER."""
    n = LARGEST_POWER - SMALLEST_POWER + 1
    high = np.empty(n, dtype=np.uint64)
    low = np.empty(n, dtype=np.uint64)
    mask = (1 << 64) - 1
    for i in range(n):
        value = _power_of_five_128(SMALLEST_POWER + i)
        high[i] = value >> 64
        low[i] = value & mask
    return high, low
