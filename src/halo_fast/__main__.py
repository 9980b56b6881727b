"""``python -m halo_fast``: Ctrl-C is taken over before the command imports anything heavy.

The cyclic garbage collector is paused until the command's heavy imports are done
(``cli.main.settle_start``): collecting while numpy and numba load finds nothing to free.

The process ends with ``os._exit`` once the output is flushed: the interpreter's own
shutdown (which puts the default SIGINT action back, so a Ctrl-C in it would kill the
process with a signal instead of exit 130) has nothing left to do for a command.
"""

import gc
import os
import sys

gc.disable()

from .cli import interrupt  # noqa: E402

interrupt.install()

from .cli.main import main  # noqa: E402  (after the handler: an import interrupted exits cleanly too)

code = main(own_process=True)
try:
    sys.stdout.flush()
    sys.stderr.flush()
except (BrokenPipeError, ValueError):  # the reader went away (| head): nothing more to say to it
    pass
os._exit(code)
