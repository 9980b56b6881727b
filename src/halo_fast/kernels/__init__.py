"""numba kernels: the number parser, array decoding, fused reductions, structure scanning.

Importing this package imports nothing and touches no file. numba's cache of the
kernels is checked against all of this folder's sources (``cache.py``) lazily, when
the first kernel is loaded or compiled (``jit.QuickLoadCache``), not here.
"""
