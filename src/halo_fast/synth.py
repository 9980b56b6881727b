"""Realistic synthetic attention captures with a planted, recorded truth.

:func:`write_capture` writes a single-JSON capture in the Halo Weave format
(``metadata``, ``prompt_tokens``, ``generated_tokens``; see
``DATA_CAPTURE_GUIDE.md``), streaming one generated token at a time to a
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
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import zlib

import numpy as np

__all__ = [
    "STYLES",
    "GROUP_DECAY_RATES",
    "GROUP_INITIAL_SHARES",
    "LOCAL_WINDOW",
    "MIN_PROMPT",
    "SyntheticCapture",
    "write_capture",
    "estimate_tokens",
    "format_floats",
    "js_number",
    "dumps",
]

STYLES = ("js", "py", "indent")

#: Planted per-step decay rate of each group's share of attention.
GROUP_DECAY_RATES = {"critical": 0.001, "irrelevant": 0.03, "secondary": 0.01}
#: Each group's share of attention at step 0 (mean over layers and heads).
GROUP_INITIAL_SHARES = {"critical": 0.15, "irrelevant": 0.10, "secondary": 0.08}
GROUP_NAMES = ("critical", "irrelevant", "secondary")

LOCAL_WINDOW = 20
#: Smallest prompt that still holds BOS, one system token and one 2-token sentence per group.
MIN_PROMPT = 8

BASE_TIMESTAMP_MS = 1763681849744
_BLOCK = 256  # positions / steps per independently seeded random block
BOS_TEXT = "<|im_start|>"
EOT_TEXT = "<|im_end|>"
SPECIAL_IDS = {BOS_TEXT: 151644, EOT_TEXT: 151645}

# --------------------------------------------------------------------------- prompt text
# Token lists are written as "|"-separated word pieces (no special token contains "|" here).


def _pieces(spec: str) -> list[str]:
    return spec.split("|")


_SYSTEM = [
    [BOS_TEXT, "system", "\n"] + _pieces("You| are| a| careful| analyst|."),
    _pieces(" Quote| every| value| exactly| as| written|.") + [EOT_TEXT, "\n"],
]
_INTRO = [BOS_TEXT, "user", "\n"] + _pieces("Please| analyze| the| following| data|.")
# (group, pieces, indices of "hard" pieces kept first when the sentence is shortened)
_PLANTED = [
    ("critical", _pieces(" First|,| consider| the| primary| factors|:| X|,| Y|,| and| Z|."), ()),
    ("critical", _pieces(" These| are| critical| to| understanding| the| outcome|."), ()),
    ("irrelevant", _pieces(" By| the| way|,| it|'s| a| nice| day| today|.| 🙂"), (11,)),
    ("irrelevant", _pieces(" The| weather| forecast| shows| rain| tomorrow|.\n"), (6,)),
    ("secondary", _pieces(" Secondary| factors| include| A| and| B|."), ()),
    ("critical", _pieces(' The| raw| record| reads| {"data":[|3|,| 5|]}| exactly|.'), (4, 8)),
    ("irrelevant", _pieces(" My| friend| opened| a| caf|é| in| 日本| last| spring|."), (5, 7)),
    ("secondary", _pieces(' Note| that| A| is| labeled| "|alpha|"| in| the| table|.'), (5, 7)),
    ("irrelevant", _pieces(" Hello|,| and| greetings| to| everyone| reading| this|!"), ()),
    ("secondary", _pieces(" B| is| read| from| C|:\\|data|\\|b|.csv| when| available|."), (5, 7)),
]
_FILLER = [
    _pieces(" Additional| context| follows| for| completeness|."),
    _pieces(" The| table| lists| values| for| each| quarter|."),
    _pieces(" Some| entries| were| collected| by| hand|."),
    _pieces(" Numbers| are| rounded| to| two| decimals|."),
    _pieces(" See| the| appendix| at| C|:\\|reports|\\|q|3|.txt| for| details|."),
    _pieces(" The| na|ï|ve| estimate| was| discarded| —| it| ignored| the| trend|."),
    _pieces(' Column| headers| read| "|id|",| "|value|",| and| "|note|".'),
    _pieces(" Each| record| has| an| id| and| a| timestamp|."),
    _pieces(" Earlier| reports| used| a| different| format|,| with| tabs|\t|between| fields|."),
    _pieces(" Missing| values| are| marked| with| a| dash|."),
]
_CLOSING = _pieces(" Finally|,| summarize| your| findings|.") + [EOT_TEXT, "\n"]
_ASSISTANT = [BOS_TEXT, "assistant", "\n"]
_ANSWER = _pieces(
    "To| analyze| the| data|,| I| will| focus| on| the| primary| factors|:| X|,| Y|,| and| Z|.|\n\n|"
    "First|,| X| is| critical| to| understanding| the| outcome|.|"
    ' The| record| {"data":[|3|,| 5|]}| confirms| it|.|\n|'
    'Second|,| Y| and| Z| interact|;| the| value| labeled| "|alpha|"| matters| too|.|\n|'
    "Secondary| factors| A| and| B| play| a| smaller| role|;| B| comes| from| C|:\\|data|\\|b|.csv|.|\n|"
    "The| weather| is| irrelevant| here| —| even| at| the| café| in| 日本|.|\n|"
    "In| summary|,| X|,| Y|,| and| Z| drive| the| result|.| ✅|\n"
) + [EOT_TEXT]

_STRUCTURAL = {BOS_TEXT, EOT_TEXT, "\n", "system", "user", "assistant"}


def _token_id(text: str) -> int:
    if text in SPECIAL_IDS:
        return SPECIAL_IDS[text]
    return 100 + zlib.crc32(text.encode("utf-8")) % 150000


class _Sentence:
    __slots__ = ("key", "turn", "role", "pieces", "group", "hard")

    def __init__(self, key, turn, role, pieces, group=None, hard=()):
        self.key = key
        self.turn = turn
        self.role = role
        self.pieces = list(pieces)
        self.group = group
        self.hard = set(hard)

    def shrink(self) -> None:
        """Drop one piece: the last one that is not a "hard" piece, else the last one."""
        for i in range(len(self.pieces) - 1, -1, -1):
            if i not in self.hard:
                break
        else:
            i = len(self.pieces) - 1
        del self.pieces[i]
        self.hard = {j - (j > i) for j in self.hard if j != i}


def _layout(prompt: int) -> list[_Sentence]:
    """The prompt's sentences, shortened or padded with filler to exactly ``prompt`` tokens."""
    if prompt < MIN_PROMPT:
        raise ValueError(f"prompt must be at least {MIN_PROMPT} tokens, got {prompt}")
    sentences = [
        _Sentence("sys0", 0, "system", _SYSTEM[0]),
        _Sentence("sys1", 0, "system", _SYSTEM[1]),
        _Sentence("intro", 1, "user", _INTRO),
    ]
    planted = [_Sentence(f"planted{i}", 1, "user", p, g, h) for i, (g, p, h) in enumerate(_PLANTED)]
    sentences += planted
    closing = _Sentence("closing", 1, "user", _CLOSING)
    sentences += [closing, _Sentence("assistant", 2, "assistant", _ASSISTANT)]

    def total():
        return sum(len(s.pieces) for s in sentences)

    def by_key(key):
        return next(s for s in sentences if s.key == key)

    def shrink_to(sents, minimum):
        # shorten the longest first, one piece at a time
        while total() > prompt:
            longest = max((s for s in sents if s in sentences), key=lambda s: len(s.pieces), default=None)
            if longest is None or len(longest.pieces) <= minimum:
                return
            longest.shrink()
            if not longest.pieces:
                sentences.remove(longest)

    if total() > prompt:
        for key in ("closing", "sys1", "intro"):
            shrink_to([by_key(key)], 0)
        shrink_to(planted, 3)
        shrink_to([by_key("sys0")], 4)
        shrink_to(planted, 2)
        shrink_to([by_key("assistant")], 0)
        shrink_to([by_key("sys0")], 2)
    # last resort: drop whole planted sentences, keeping one per group
    while total() > prompt:
        counts = {g: sum(1 for s in sentences if s.group == g) for g in GROUP_NAMES}
        group = max(GROUP_NAMES, key=lambda g: counts[g])
        if counts[group] <= 1:
            raise ValueError(f"prompt={prompt} is too small for the planted sentences")  # pragma: no cover
        sentences.remove([s for s in sentences if s.group == group][-1])
    # pad with filler sentences after the planted ones
    at = max(i for i, s in enumerate(sentences) if s.group) + 1
    i = 0
    while total() < prompt:
        pieces = _FILLER[i % len(_FILLER)][: prompt - total()]
        sentences.insert(at + i, _Sentence(f"filler{i}", 1, "user", pieces))
        i += 1
    return sentences


# --------------------------------------------------------------------------- number and JSON text


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


# --------------------------------------------------------------------------- the model


class SyntheticCapture:
    """Everything that is fixed for a capture: prompt, truth and per-(layer, head) factors.

    ``attention(step)`` gives the float32 ``[layers, heads, prompt + step]`` values of one
    generated token; it depends only on the constructor arguments and ``step`` (each step
    has its own random stream), so steps can be produced in any order or in parallel.
    """

    def __init__(self, *, layers=28, heads=28, prompt=200, tokens=64, seed=0, logits=False, null_first=True):
        for name, value, low in (("layers", layers, 1), ("heads", heads, 1), ("tokens", tokens, 0)):
            if int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.layers, self.heads, self.prompt, self.tokens = int(layers), int(heads), int(prompt), int(tokens)
        self.seed, self.logits, self.null_first = int(seed), bool(logits), bool(null_first)
        self._build_prompt()
        self._build_model()

    # ---- prompt and truth

    def _build_prompt(self) -> None:
        sentences = _layout(self.prompt)
        tokens = []
        groups = {g: {"sentences": [], "positions": []} for g in GROUP_NAMES}
        counters: dict[int, int] = {}
        for s in sentences:
            sid = counters.get(s.turn, 0)
            counters[s.turn] = sid + 1
            if s.group:
                groups[s.group]["sentences"].append([s.turn, sid])
            for piece in s.pieces:
                if s.group:
                    groups[s.group]["positions"].append(len(tokens))
                tokens.append(
                    {
                        "token_id": _token_id(piece),
                        "text": piece,
                        "position": len(tokens),
                        "turn_id": s.turn,
                        "message_role": s.role,
                        "sentence_id": sid,
                    }
                )
        assert len(tokens) == self.prompt and tokens[0]["text"] == BOS_TEXT
        self.prompt_tokens = tokens
        self.group_positions = {g: np.array(groups[g]["positions"], dtype=np.intp) for g in GROUP_NAMES}
        taken = np.zeros(self.prompt, dtype=bool)
        taken[0] = True
        for g in GROUP_NAMES:
            taken[self.group_positions[g]] = True
        free = np.flatnonzero(~taken)
        # anchors: structural tokens (role names, newlines, turn markers) outside the prompt's
        # local window, at most 4, always leaving one free prompt position for the noise
        candidates = [int(p) for p in free if tokens[p]["text"] in _STRUCTURAL and p < self.prompt - LOCAL_WINDOW][
            : max(0, min(4, len(free) - 1))
        ]
        self.anchors = np.array(candidates, dtype=np.intp)
        self.groups = [
            {
                "name": g,
                "sentences": groups[g]["sentences"],
                "decay_rate": GROUP_DECAY_RATES[g],
                "initial_share": GROUP_INITIAL_SHARES[g],
                "positions": groups[g]["positions"],
            }
            for g in GROUP_NAMES
        ]

    def truth(self, style: str) -> dict:
        return {
            "seed": self.seed,
            "layers": self.layers,
            "heads": self.heads,
            "prompt": self.prompt,
            "tokens": self.tokens,
            "style": style,
            "logits": self.logits,
            "null_first": self.null_first,
            "values": "logits" if self.logits else "probabilities",
            "groups": [dict(g) for g in self.groups],
            "bos": 0,
            "anchors": self.anchors.tolist(),
            "local_window": LOCAL_WINDOW,
        }

    def metadata(self, style: str) -> dict:
        if self.logits:
            kind = "raw pre-softmax logits (softmax of a row gives the planted probabilities)"
        else:
            kind = "post-softmax probabilities"
        return {
            "timestamp": BASE_TIMESTAMP_MS,
            "model": f"synthetic-{self.layers}x{self.heads}",
            "description": "Synthetic attention capture (halo_fast.synth): critical, irrelevant and secondary "
            "sentence groups with planted exponential decay, BOS sink, anchors and a local wave; "
            f"values are {kind}.",
            "config": {"max_length": self.tokens, "temperature": 0.7, "top_p": 0.9},
            "synth": self.truth(style),
        }

    def generated_token(self, step: int) -> dict:
        """The generated token's fields except ``attention``."""
        text = _ANSWER[step % len(_ANSWER)]
        return {
            "step": step,
            "token_id": _token_id(text),
            "text": text,
            "position": self.prompt + step,
            "timestamp": int(self._timestamps[step]),
        }

    def has_attention(self, step: int) -> bool:
        return not (self.null_first and step == 0)

    # ---- attention model

    def _build_model(self) -> None:
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(0,)))
        L, H = self.layers, self.heads
        rows = L * H
        depth = np.repeat(np.arange(L) / max(L - 1, 1), H)  # 0 (first layer) .. 1 (last)

        # group factors: constant over steps, mean over (layer, head) exactly 1
        self._group_mass0 = {}
        layer_z = rng.normal(size=(len(GROUP_NAMES), L))
        for gi, g in enumerate(GROUP_NAMES):
            x = np.exp(0.25 * np.repeat(layer_z[gi], H) + 0.3 * rng.normal(size=rows))
            x = np.clip(x, 0.35, 2.5)
            self._group_mass0[g] = GROUP_INITIAL_SHARES[g] * (x / x.mean())
        budget = 1.0 - sum(self._group_mass0.values())  # > 0.17 by the clip above

        # BOS sink grows with depth; a few heads are "local" heads with a strong wave
        u_bos = np.clip(0.1 + 0.6 * depth + rng.normal(0, 0.12, rows), 0.03, 0.8)
        u_anchor = rng.uniform(0.1, 0.22, rows) if len(self.anchors) else np.zeros(rows)
        local_head = rng.random(rows) < 0.15
        u_local = np.where(local_head, rng.uniform(0.35, 0.6, rows), rng.uniform(0.08, 0.25, rows))
        scale = np.minimum(1.0, 0.85 / (u_bos + u_anchor + u_local))
        self._bos = budget * u_bos * scale
        self._anchor_mass = budget * u_anchor * scale
        self._local_mass = budget * u_local * scale
        self._anchor_w = rng.dirichlet(np.ones(len(self.anchors)), size=rows) if len(self.anchors) else None

        # within-group token profiles: content words weigh more than punctuation
        self._group_w = {}
        for g in GROUP_NAMES:
            pos = self.group_positions[g]
            salience = np.array([1.0 if any(c.isalnum() for c in self.prompt_tokens[p]["text"]) else 0.3 for p in pos])
            self._group_w[g] = salience * rng.lognormal(0.0, 0.6, size=(rows, len(pos)))

        # local wave length per row
        self._tau = np.where(local_head, rng.uniform(3.0, 8.0, rows), rng.uniform(1.2, 4.0, rows))
        # persistent background pattern over every position (drawn in blocks, see _noise_base)
        total = self.prompt + self.tokens
        self._sigma = rng.uniform(1.0, 2.2, rows)
        self._base_blocks: dict[int, np.ndarray] = {}
        gaps = np.concatenate(
            [self._block_rng(4, b).integers(18, 90, size=_BLOCK) for b in range(self.tokens // _BLOCK + 1)]
        )
        self._timestamps = BASE_TIMESTAMP_MS + 350 + np.cumsum(gaps)
        free = np.ones(total, dtype=bool)
        free[0] = False
        free[self.anchors] = False
        for g in GROUP_NAMES:
            free[self.group_positions[g]] = False
        self._free = free
        # a few "sharp" rows whose faintest positions underflow to exactly 0 (probabilities only)
        self._sharp = np.sort(rng.choice(rows, size=max(1, round(0.05 * rows)), replace=False))

    def _block_rng(self, stream: int, block: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(stream, block)))

    def _noise_base(self, ctx: int) -> np.ndarray:
        """The persistent background weights of positions 0..ctx-1, ``[rows, ctx]``.

        Drawn in blocks of positions from their own random streams, so a longer capture
        with the same seed starts with the same tokens as a shorter one.
        """
        last = (ctx - 1) // _BLOCK
        for b in range(last + 1):
            if b not in self._base_blocks:
                z = self._block_rng(3, b).normal(size=(len(self._sigma), _BLOCK))
                self._base_blocks[b] = np.exp(self._sigma[:, None] * z)
        return np.concatenate([self._base_blocks[b] for b in range(last + 1)], axis=1)[:, :ctx]

    def group_share(self, name: str, step: int) -> float:
        """The planted share of a group at ``step`` (mean over layers and heads)."""
        return GROUP_INITIAL_SHARES[name] * math.exp(-GROUP_DECAY_RATES[name] * step)

    def probabilities(self, step: int) -> np.ndarray:
        """float64 ``[layers * heads, prompt + step]`` rows, each summing to 1."""
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(1, step)))
        rows = self.layers * self.heads
        ctx = self.prompt + step
        p = np.zeros((rows, ctx))
        p[:, 0] = self._bos
        rest = 1.0 - self._bos
        if len(self.anchors):
            p[:, self.anchors] = self._anchor_mass[:, None] * self._anchor_w
            rest = rest - self._anchor_mass
        for g in GROUP_NAMES:
            pos = self.group_positions[g]
            w = self._group_w[g] * rng.lognormal(0.0, 0.08, size=(rows, len(pos)))
            mass = self._group_mass0[g] * math.exp(-GROUP_DECAY_RATES[g] * step)
            p[:, pos] = (mass / w.sum(axis=1))[:, None] * w
            rest = rest - mass
        free = self._free[:ctx]
        lo = max(0, ctx - LOCAL_WINDOW)
        window = np.arange(lo, ctx)
        k = np.exp(-(ctx - 1 - window)[None, :] / self._tau[:, None]) * free[lo:]
        ksum = k.sum(axis=1)
        local = np.where(ksum > 0, self._local_mass, 0.0)
        p[:, lo:] += (local / np.where(ksum > 0, ksum, 1.0))[:, None] * k
        rest = rest - local
        noise = self._noise_base(ctx) * rng.lognormal(0.0, 0.3, size=(rows, ctx)) * free
        if not self.logits and len(self._sharp) and free.sum() >= 20:
            sharp = noise[self._sharp]
            cut = np.nanquantile(np.where(free, sharp, np.nan), 0.04, axis=1)
            sharp[sharp < cut[:, None]] = 0.0
            noise[self._sharp] = sharp
        p += (rest / noise.sum(axis=1))[:, None] * noise
        return p

    def attention(self, step: int) -> np.ndarray:
        """The float32 ``[layers, heads, prompt + step]`` values written for ``step``."""
        p = self.probabilities(step)
        if self.logits:
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(2, step)))
            offset = rng.uniform(-65.0, 70.0, size=(p.shape[0], 1))
            values = (np.log(p) + offset).astype(np.float32)
        else:
            values = p.astype(np.float32)
        return values.reshape(self.layers, self.heads, -1)


# --------------------------------------------------------------------------- writing

_PLACEHOLDER = "@@halo_fast_synth_placeholder@@"
_TOKEN_SEPARATOR = {"js": ",", "py": ", ", "indent": ",\n    "}


class _TokenWriter:
    """Text of the document frame and of one generated token, in one style."""

    def __init__(self, synth: SyntheticCapture, style: str):
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        self.synth, self.style = synth, style
        self.placeholder = dumps(_PLACEHOLDER, style)

    def frame(self, metadata: dict) -> tuple[str, str]:
        doc = {"metadata": metadata, "prompt_tokens": self.synth.prompt_tokens, "generated_tokens": []}
        if self.synth.tokens == 0:
            return dumps(doc, self.style), ""
        doc["generated_tokens"] = [_PLACEHOLDER]
        head, tail = dumps(doc, self.style).split(self.placeholder)
        return head, tail

    def token(self, step: int, values: np.ndarray | None = None) -> list[str]:
        """The token's text in pieces: [before data, data, after data] (or one piece)."""
        synth = self.synth
        tok = synth.generated_token(step)
        if not synth.has_attention(step):
            tok["attention"] = None
            return [self._indent(dumps(tok, self.style))]
        if values is None:
            values = synth.attention(step)
        ctx = synth.prompt + step
        tok["attention"] = {"shape": [synth.layers, synth.heads, ctx], "context_length": ctx, "data": _PLACEHOLDER}
        before, after = self._indent(dumps(tok, self.style)).split(self.placeholder)
        return [before, format_floats(values, self.style), after]

    def _indent(self, text: str) -> str:
        # a token is an item of "generated_tokens": two levels deep in the document
        return text.replace("\n", "\n    ") if self.style == "indent" else text

    def token_bytes(self, step: int) -> bytes:
        return "".join(self.token(step)).encode("utf-8")


# Worker side of the parallel writer: each process builds its own SyntheticCapture.
_WORKER: _TokenWriter | None = None


def _worker_init(kwargs: dict, style: str) -> None:
    global _WORKER
    _WORKER = _TokenWriter(SyntheticCapture(**kwargs), style)


def _worker_token(step: int) -> bytes:
    return _WORKER.token_bytes(step)


def _in_order(pool, count: int, depth: int):
    """Token texts from the pool in step order, with at most ``depth`` in flight (bounded memory)."""
    from collections import deque

    pending: deque = deque()
    submitted = 0
    for _ in range(count):
        while submitted < count and len(pending) < depth:
            pending.append(pool.apply_async(_worker_token, (submitted,)))
            submitted += 1
        yield pending.popleft().get()


def _default_workers(synth: SyntheticCapture) -> int:
    values = synth.layers * synth.heads * (synth.prompt + synth.tokens // 2) * synth.tokens
    if values < 4_000_000:  # < ~80 MB: not worth starting processes
        return 0
    return min(os.cpu_count() or 1, 8)


def write_capture(
    path,
    *,
    layers=28,
    heads=28,
    prompt=200,
    tokens=64,
    seed=0,
    style="js",
    logits=False,
    null_first=True,
    progress=False,
    workers=None,
) -> dict:
    """Write a synthetic capture to ``path`` (atomically) and return the metadata written.

    ``style``: ``"js"`` (``JSON.stringify``), ``"py"`` (``json.dumps``) or ``"indent"``
    (``json.dumps(indent=2)``).  ``logits``: write raw pre-softmax logits instead of
    probabilities.  ``null_first``: step 0 has ``"attention": null``.  ``progress``: a
    tqdm bar on stderr.  ``workers``: processes formatting tokens in parallel (``None``:
    one per CPU for large captures, ``0``: in this process); the output does not depend on it.

    The truth is in ``metadata["synth"]``: the planted sentence groups (``name``,
    ``sentences`` as [turn_id, sentence_id], ``decay_rate``, ``initial_share``,
    ``positions``), ``bos``, ``anchors`` and ``local_window``.
    """
    kwargs = dict(
        layers=layers, heads=heads, prompt=prompt, tokens=tokens, seed=seed, logits=logits, null_first=null_first
    )
    synth = SyntheticCapture(**kwargs)
    writer = _TokenWriter(synth, style)
    metadata = synth.metadata(style)
    head, tail = writer.frame(metadata)
    if workers is None:
        workers = _default_workers(synth)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    bar = None
    pool = None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(fd, "wb", buffering=1 << 22) as out:
            out.write(head.encode("utf-8"))
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=synth.tokens, unit="tok", file=sys.stderr, desc=os.path.basename(path))
            separator = _TOKEN_SEPARATOR[style].encode()
            if workers and synth.tokens > 1:
                import multiprocessing

                ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
                pool = ctx.Pool(workers, initializer=_worker_init, initargs=(kwargs, style))
                chunks = _in_order(pool, synth.tokens, depth=2 * workers)
            else:
                chunks = (writer.token_bytes(step) for step in range(synth.tokens))
            for step, chunk in enumerate(chunks):
                if step:
                    out.write(separator)
                out.write(chunk)
                if bar is not None:
                    bar.update(1)
            out.write(tail.encode("utf-8"))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        if bar is not None:
            bar.close()
    return metadata


def estimate_tokens(
    size_bytes: float, *, layers=28, heads=28, prompt=200, seed=0, style="js", logits=False, null_first=True
) -> int:
    """How many generated tokens make a capture of about ``size_bytes`` (from sampled tokens)."""
    rows = layers * heads

    def bytes_per_value(step):
        synth = SyntheticCapture(
            layers=layers, heads=heads, prompt=prompt, tokens=step + 1, seed=seed, logits=logits, null_first=False
        )
        writer = _TokenWriter(synth, style)
        return len(writer.token_bytes(step)) / (rows * (prompt + step))

    def size(n, bpv):
        steps = np.arange(n)
        with_attention = steps[1:] if null_first else steps
        return 2000 + 100 * prompt + 150 * n + bpv * rows * float(np.sum(prompt + with_attention))

    def solve(bpv):
        lo, hi = 0, 1
        while size(hi, bpv) < size_bytes:
            hi *= 2
        while lo < hi:
            mid = (lo + hi) // 2
            if size(mid, bpv) < size_bytes:
                lo = mid + 1
            else:
                hi = mid
        return lo

    n = solve(bytes_per_value(0))
    return max(1, solve(bytes_per_value(max(0, n // 2))))
