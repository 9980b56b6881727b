"""The attention model with a planted truth: group shares decaying at known rates, a BOS sink,
anchors, a local wave and noise; every row a probability distribution (or its logits)."""

from __future__ import annotations

import math

import numpy as np

from .prompt import ANSWER, BOS_TEXT, GROUP_NAMES, STRUCTURAL, piece_id, sentence_layout

#: Planted per-step decay rate of each group's share of attention.
GROUP_DECAY_RATES = {"critical": 0.001, "irrelevant": 0.03, "secondary": 0.01}
#: Each group's share of attention at step 0 (mean over layers and heads).
GROUP_INITIAL_SHARES = {"critical": 0.15, "irrelevant": 0.10, "secondary": 0.08}
LOCAL_WINDOW = 20
BASE_TIMESTAMP_MS = 1763681849744
_BLOCK = 256  # positions / steps per independently seeded random block


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
        sentences = sentence_layout(self.prompt)
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
                        "token_id": piece_id(piece),
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
        candidates = [int(p) for p in free if tokens[p]["text"] in STRUCTURAL and p < self.prompt - LOCAL_WINDOW][
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
        text = ANSWER[step % len(ANSWER)]
        return {
            "step": step,
            "token_id": piece_id(text),
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
