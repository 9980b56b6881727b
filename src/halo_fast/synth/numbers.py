"""Number and JSON text the way real writers lay it out: ``JSON.stringify`` (``js``),
``json.dumps`` (``py``) and ``json.dumps(indent=2)`` (``indent``), shortest float32 digits."""

from __future__ import annotations

import json
import math
import re

import numpy as np

STYLES = ("js", "py", "indent")


def js_number(x: float) -> str:
    """``JSON.stringify`` text of a finite double (shortest digits, JS exponent rules)."""
    x = float(x)
    if not math.isfinite(x):
        return "null"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    text = repr(abs(x))
    mantissa, _, exp = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    point = len(whole) + (int(exp) if exp else 0)  # value = 0.DIGITS * 10**point
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= point <= 21:
        return sign + digits + "0" * (point - k)
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * (-point) + digits
    e = point - 1
    return sign + digits[0] + ("." + digits[1:] if k > 1 else "") + ("e+" if e > 0 else "e-") + str(abs(e))


def _js_dumps(obj) -> str:
    """``JSON.stringify(obj)`` for dicts, lists, str, int, float, bool and None."""
    if isinstance(obj, str):
        return json.dumps(obj, ensure_ascii=False)
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "true" if obj else "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, float):
        return js_number(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(json.dumps(str(k), ensure_ascii=False) + ":" + _js_dumps(v) for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(_js_dumps(v) for v in obj) + "]"
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def dumps(obj, style: str) -> str:
    """Serialise a plain JSON object the way ``style`` writes it (floats as their shortest digits)."""
    if style == "js":
        return _js_dumps(obj)
    if style == "py":
        return json.dumps(obj)
    if style == "indent":
        return json.dumps(obj, indent=2)
    raise ValueError(f"style must be one of {STYLES}, got {style!r}")


# Rewrites of Python's repr digits into JavaScript's, done on the *reversed* text so that
# every pattern starts with a literal ("50-e" is "e-05" backwards) and the regex engine can
# jump between matches instead of trying every position.
_REV_E05 = re.compile(r"50-e(?:(\d+)\.)?(\d)")  # d.ddde-05 -> 0.0000dddd
_REV_E06 = re.compile(r"60-e(?:(\d+)\.)?(\d)")  # d.ddde-06 -> 0.00000dddd
_E_PLUS = re.compile(r"-?\d+(?:\.\d+)?e\+\d+")
_INDENT_ITEM = ",\n" + " " * 10


def format_floats(values: np.ndarray, style: str) -> str:
    """A JSON array of float32 ``values`` as ``style`` writes it.

    Each number is the shortest decimal of the float32 value taken as a double
    (the digits of ``repr(float(v))``).  ``indent`` lays the array out as the value
    of ``"data"`` inside a generated token of a ``json.dumps(indent=2)`` capture.
    """
    flat = np.asarray(values, dtype=np.float32).ravel()
    if not np.isfinite(flat).all():
        raise ValueError("synthetic values must be finite")
    if style == "js":
        flat = flat + np.float32(0.0)  # -0.0 -> 0.0 (JSON.stringify writes -0 as 0)
    text = repr(flat.tolist())
    if style == "py":
        return text
    if style == "indent":
        if not len(flat):
            return "[]"
        return "[\n" + " " * 10 + text[1:-1].replace(", ", _INDENT_ITEM) + "\n" + " " * 8 + "]"
    if style != "js":
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    rev = text[::-1].replace(" ,", ",")
    if np.any(flat == np.trunc(flat)):  # integer-valued: "1.0" -> "1"
        rev = rev.replace(",0.", ",").replace("]0.", "]")
    rev = rev.replace("70-e", "7-e").replace("80-e", "8-e").replace("90-e", "9-e")
    rev = _REV_E05.sub(r"\1\g<2>0000.0", rev)
    rev = _REV_E06.sub(r"\1\g<2>00000.0", rev)
    text = rev[::-1]
    if "e+" in text:  # |x| >= 1e16: Python goes exponential at 16 digits, JS at 21 (rare)
        text = _E_PLUS.sub(lambda m: js_number(float(m.group())), text)
    return text
