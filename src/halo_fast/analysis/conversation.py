"""The context as Halo Weave's front end holds it: who each position is, and ``pruneToFit``.

The front end (js/conversation.js at RecursiveRabbit/halo_weave
49e142cce18f6456bc21b1288a32fa88374c02bc) keeps the system prompt apart
(``systemPromptTokens``: attention indices ``0..sysLen-1``, never scored, never
pruned) and every other token in one list with its turn, role and sentence. In a
capture the system prompt is the run of leading system-role prompt tokens; the rest
of the prompt are conversation tokens; the generated tokens (and any context
position the prompt table does not hold, such as an assistant prefix it missed)
belong to the turn being generated, with sentence ids from the front end's own
boundary rule (``_updateSentenceBoundary``), replayed here on their texts.

``prune_order`` replays ``pruneToFit`` after the capture's last step, pruning as far
as it goes: the order in which it deletes sentences.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

#: The front end's ``minChunkTokens``: a sentence (chunk) ends at a boundary only once it holds this many tokens.
MIN_CHUNK_TOKENS = 64
#: The front end keeps the last 10 UTF-16 code units of text to look for boundaries in.
RECENT_UNITS = 10


@dataclass
class ContextTokens:
    """Every context position ``0..n-1`` with the front end's view of it."""

    turn: np.ndarray  # int64 [n]
    sentence: np.ndarray  # int64 [n]
    role: list[str]
    text: list[str]
    in_prompt: np.ndarray  # bool [n]: a row of the capture's prompt table
    n_system: int  # leading system-role positions: the front end's system prompt
    current_turn: int  # the turn being generated

    def __len__(self) -> int:
        return len(self.turn)

    def __repr__(self) -> str:
        return (
            f"ContextTokens({len(self)} positions, {self.n_system} system, {int(self.in_prompt.sum())} in the prompt, "
            f"generating turn {self.current_turn})"
        )


class BoundaryReplay:
    """``_updateSentenceBoundary``, fed one token text at a time (its state is reset at each turn)."""

    def __init__(self, sentence: int = 0):
        self.sentence = sentence
        self.chunk_tokens = 0
        self.recent = ""
        self.in_code = False

    def feed(self, text: str) -> None:
        self.chunk_tokens += 1
        self.recent = _last_units(self.recent + text, RECENT_UNITS)
        boundary = "\n\n" in self.recent
        if "\n```" in self.recent:
            boundary = True
            self.in_code = not self.in_code
        if not self.in_code and "\n}" in self.recent:
            boundary = True
        if boundary and self.chunk_tokens >= MIN_CHUNK_TOKENS:
            self.sentence += 1
            self.chunk_tokens = 0
            self.recent = ""


def _last_units(text: str, n: int) -> str:
    """The last ``n`` UTF-16 code units of ``text`` (JavaScript's ``slice(-n)``; may split a surrogate pair)."""
    units = text.encode("utf-16-le", "surrogatepass")
    if len(units) <= 2 * n:
        return text
    return units[-2 * n :].decode("utf-16-le", "surrogatepass")


def generated(red) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(positions, token ids, texts) of every generated token -- those recorded without attention and
    those a sampling left out too -- from the capture ``red`` was reduced from; from ``red``'s own rows
    when that is not at hand (a reduce output holds only its steps with attention)."""
    import os

    from ..api import open_capture
    from ..store import is_reduce_output

    source = red.source
    if source and os.path.exists(source) and not is_reduce_output(source):
        with open_capture(source, recover=bool(red.extra.get("recovery"))) as cap:
            return generated_tokens(cap.token_table)
    n = len(red.steps)
    ids = np.asarray(red.token_ids, dtype=np.int64) if len(red.token_ids) else np.full(n, -1, np.int64)
    return np.asarray(red.positions, dtype=np.int64), ids, [_text(t) for t in red.texts]


def generated_tokens(table) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(positions, token ids, texts) of every row of a capture's token table."""
    n = len(table)
    texts = [_text(t) for t in (table["text"] if "text" in table else [""] * n)]
    return int_column(table, "position", n, -1), int_column(table, "token_id", n, -1), texts


def context_tokens(red) -> ContextTokens:
    """The front end's view of every position of ``red``'s context (see the module docstring)."""
    positions, _, gen_texts = generated(red)
    return build_context(red.prompt, int(np.asarray(red.data).shape[-1]), positions, gen_texts)


def build_context(prompt, width: int, positions: np.ndarray, gen_texts: list[str]) -> ContextTokens:
    """:func:`context_tokens` from its parts: the prompt table, the context's width, and the position
    and text of every generated token."""
    n_prompt = len(prompt)
    n = max(width, n_prompt, int(positions.max()) + 1 if len(positions) else 0)
    turns = int_column(prompt, "turn_id", n_prompt, 0)
    sentences = int_column(prompt, "sentence_id", n_prompt, 0)
    roles = [_text(r) for r in (prompt["message_role"] if "message_role" in prompt else [""] * n_prompt)]
    texts = [_text(t) for t in (prompt["text"] if "text" in prompt else [""] * n_prompt)]
    n_system = 0
    while n_system < n_prompt and roles[n_system] == "system":
        n_system += 1
    if n_prompt:
        current = int(turns[-1]) if roles[-1] == "assistant" else int(turns[-1]) + 1
    else:
        current = 0
    generated_text = {int(p): t for p, t in zip(positions.tolist(), gen_texts) if p >= 0}
    replay = BoundaryReplay()
    for k in range(n_prompt):  # the turn being generated may have begun in the prompt (an assistant prefix)
        if int(turns[k]) == current:
            replay.sentence = int(sentences[k])
            replay.feed(texts[k])
    turn = np.full(n, current, dtype=np.int64)
    sentence = np.zeros(n, dtype=np.int64)
    turn[:n_prompt] = turns
    sentence[:n_prompt] = sentences
    all_roles = roles + ["assistant"] * (n - n_prompt)
    all_texts = texts + [""] * (n - n_prompt)
    for p in range(n_prompt, n):
        sentence[p] = replay.sentence  # addStreamingToken: the sentence id first, then the boundary check
        all_texts[p] = generated_text.get(p, "")
        replay.feed(all_texts[p])
    in_prompt = np.zeros(n, dtype=bool)
    in_prompt[:n_prompt] = True
    return ContextTokens(turn, sentence, all_roles, all_texts, in_prompt, n_system, current)


def int_column(table, name: str, n: int, default: int) -> np.ndarray:
    """Column ``name`` of a token table as int64 (``default`` for a missing column or a null)."""
    if name not in table:
        return np.full(n, default, dtype=np.int64)
    return np.array([default if v is None else int(v) for v in table[name]], dtype=np.int64)


def _text(value) -> str:
    return "" if value is None else str(value)


@dataclass
class _Sentence:
    turn: int
    sentence: int
    role: str
    peak: float
    positions: list[int]
    live: bool = True


def front_end_sentences(
    tokens: ContextTokens, brightness: np.ndarray, alive: np.ndarray | None = None, stop: int | None = None
) -> list[_Sentence]:
    """``getSentences`` over the conversation tokens (the system prompt is not among them): one per
    (turn, sentence, role) in order of first token, with the peak brightness of its tokens. ``alive``
    and ``stop``: only the positions below ``stop`` not yet deleted (the front end's list mid-run)."""
    found: dict[tuple[int, int, str], _Sentence] = {}
    for p in range(tokens.n_system, len(tokens) if stop is None else min(stop, len(tokens))):
        if alive is not None and not alive[p]:
            continue
        key = (int(tokens.turn[p]), int(tokens.sentence[p]), tokens.role[p])
        s = found.get(key)
        if s is None:
            s = found[key] = _Sentence(key[0], key[1], key[2], -np.inf, [])
        s.positions.append(p)
        b = float(brightness[p]) if p < len(brightness) else np.nan
        if b > s.peak:
            s.peak = b
    return list(found.values())


def prune_order(tokens: ContextTokens, brightness: np.ndarray) -> list[list[int]]:
    """``[turn_id, sentence_id]`` of each sentence ``pruneToFit`` deletes, in order, when it prunes as far
    as it goes after the last step (:func:`prune_steps`)."""
    sentences = front_end_sentences(tokens, brightness)
    return [[s.turn, s.sentence] for group in prune_steps(sentences, tokens.current_turn) for s in group]


def prune_steps(sentences: list[_Sentence], current_turn: int) -> Iterator[list[_Sentence]]:
    """``pruneToFit``'s deletions in order, one group at a time (a sentence, or a solo anchor with its solo
    pair), for a caller that stops once the context fits: the current turn, the system prompt and
    anchor-protected sentences are skipped, a solo anchor goes with its solo pair, at least one prunable
    sentence is kept, and the lowest peak brightness goes first (the earliest on ties). Deleted
    sentences are marked not ``live``."""
    by_key = {(s.turn, s.sentence, s.role): s for s in sentences}
    live_in_turn: dict[tuple[int, str], int] = {}
    for s in sentences:
        if s.live:
            live_in_turn[(s.turn, s.role)] = live_in_turn.get((s.turn, s.role), 0) + 1

    def paired(s):
        if s.role == "user":
            p = by_key.get((s.turn + 1, 0, "assistant"))
        elif s.role == "assistant":
            p = by_key.get((s.turn - 1, 0, "user"))
        else:
            return None
        return p if p is not None and p.live else None

    def anchor_protected(s) -> bool:
        if s.sentence != 0:
            return False
        if live_in_turn[(s.turn, s.role)] > 1:
            return True
        if s.role not in ("user", "assistant"):
            return False
        p = paired(s)
        return p is not None and live_in_turn[(p.turn, p.role)] > 1

    def delete(s) -> None:
        s.live = False
        live_in_turn[(s.turn, s.role)] -= 1

    while True:
        lowest, count = None, 0
        for s in sentences:
            if not s.live or s.turn == current_turn or (s.turn == 0 and s.role == "system"):
                continue
            if anchor_protected(s):
                continue
            count += 1
            if lowest is None or s.peak < lowest.peak:
                lowest = s
        if count <= 1 or lowest is None:
            return
        pair = paired(lowest) if lowest.sentence == 0 else None
        delete(lowest)
        group = [lowest]
        if pair is not None:
            delete(pair)
            group.append(pair)
        yield group


#: Special tokens of the chat template (ChatML, as Halo Weave's front end writes it: ``<|im_start|>ROLE\n
#: ... <|im_end|>\n``); any ``<|...|>`` token counts.
def is_special(text: str) -> bool:
    t = text.strip()
    return len(t) > 4 and t.startswith("<|") and t.endswith("|>")


def template_mask(texts: list[str]) -> np.ndarray:
    """bool per token: part of the chat template -- a special token, the role after ``<|im_start|>`` up to
    and including its newline, and the newline right after ``<|im_end|>``. A pruned prompt keeps these, so
    that what is left is still a well-formed conversation."""
    mask = np.zeros(len(texts), dtype=bool)
    in_header = after_end = False
    for k, text in enumerate(texts):
        if is_special(text):
            mask[k] = True
            in_header = text.strip() == "<|im_start|>"
            after_end = text.strip() == "<|im_end|>"
            continue
        if in_header:
            mask[k] = True
            if "\n" in text:
                in_header = False
            continue
        if after_end and text.strip() == "":
            mask[k] = True
        after_end = False
    return mask


def messages(texts: list[str], turns, roles: list[str], kept: np.ndarray) -> list[dict]:
    """``[{role, content}, ...]`` per turn of the kept prompt, the chat template's tokens left out (a chat
    template puts them back). A last assistant turn with nothing in it (the generation prefix) is left out:
    it is what ``add_generation_prompt`` adds."""
    template = template_mask(texts)
    out: list[dict] = []
    last = None
    for k, text in enumerate(texts):
        turn = int(turns[k])
        if turn != last:
            out.append({"role": roles[k] or "user", "content": ""})
            last = turn
        if kept[k] and not template[k]:
            out[-1]["content"] += text
    if out and out[-1]["role"] == "assistant" and not out[-1]["content"].strip():
        out.pop()
    return out
