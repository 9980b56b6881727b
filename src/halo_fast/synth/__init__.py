"""Realistic synthetic attention captures with a planted, recorded truth.

:func:`write_capture` writes a single-JSON capture in the Halo Weave format
(``metadata``, ``prompt_tokens``, ``generated_tokens``; see
docs/formats.md, "The single-JSON capture"), streaming one generated token at a time to a
temporary file next to the target and renaming it into place at the end.

What is planted (and recorded under ``metadata["synth"]``):

* the guide's experiment: a user turn with 10 sentences -- 3 *critical*,
  4 *irrelevant*, 3 *secondary* -- whose summed attention (sum over the
  group's tokens, then mean over layers and heads) is exactly
  ``initial_share * exp(-decay_rate * step)`` up to float32 rounding;
* a BOS attention sink at position 0, a few persistent *anchor* positions,
  and a *local wave*: extra attention on the last ``local_window`` positions
  before the generation head, falling off with distance;
* the rest of each row spread with multiplicative noise over the remaining
  positions (prompt and earlier generated tokens).

Every ``[layer, head, :]`` row is a probability distribution (sums to 1 in
float64 before it is rounded to float32).  With ``logits=True`` the file holds
raw pre-softmax values instead: ``log(p) + offset`` with a random offset per
row and step (roughly -100..+100, mostly negative); ``softmax`` of a row gives
back ``p``, so the planted decay then lives in the softmax of the logits.

Numbers are the shortest decimal of each float32 value taken as a double
(the digits of ``repr(float(np.float32(x)))``), laid out the way real writers
lay them out: ``style="js"`` as ``JSON.stringify`` (compact, ``1e-7``,
``0.000012345``, ``1`` for 1.0, ``0`` for -0.0), ``style="py"`` exactly as
``json.dumps(obj)`` and ``style="indent"`` exactly as
``json.dumps(obj, indent=2)``.

The output is deterministic for a given set of arguments (timestamps
included: they start at a fixed epoch instead of the wall clock).

Modules: ``prompt`` (the prompt text and its planted sentences), ``numbers`` (number
and JSON text per writer style), ``model`` (``SyntheticCapture``: the attention model
and its truth), ``writers`` (``write_capture`` and the other formats' writers).
"""

from .model import GROUP_DECAY_RATES, GROUP_INITIAL_SHARES, LOCAL_WINDOW, SyntheticCapture
from .numbers import STYLES, dumps, format_floats, js_number
from .prompt import GROUP_NAMES, MIN_PROMPT
from .writers import estimate_tokens, write_capture

__all__ = [
    "STYLES",
    "GROUP_DECAY_RATES",
    "GROUP_INITIAL_SHARES",
    "GROUP_NAMES",
    "LOCAL_WINDOW",
    "MIN_PROMPT",
    "SyntheticCapture",
    "write_capture",
    "estimate_tokens",
    "format_floats",
    "js_number",
    "dumps",
]
