"""numba kernels: the number parser, array decoding, fused reductions, structure scanning."""

from pathlib import Path

from .cache import drop_stale_cache

drop_stale_cache(Path(__file__).parent)
