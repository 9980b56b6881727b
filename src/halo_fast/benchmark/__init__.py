"""Benchmark suite: halo_fast against the ways people read captures today.

``python -m halo_fast bench`` (see ``halo_fast.cli.bench_cmd``) and
``pytest bench/ --benchmark-only`` both time the functions in :mod:`.contenders`
on synthetic captures cached by :mod:`.data`; :mod:`.runner` runs each contender
in its own process so peak memory is per contender, and :mod:`.report` prints
and writes the results.

Deliberately empty: the child processes import this package, and the floor
contender's memory must be that of a bare interpreter.
"""
