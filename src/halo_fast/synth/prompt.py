"""The synthetic prompt: system turn, a user turn of planted sentences (critical, irrelevant,
secondary groups), filler and the assistant's answer, as word pieces with token ids."""

from __future__ import annotations

import zlib

GROUP_NAMES = ("critical", "irrelevant", "secondary")
#: Smallest prompt that still holds BOS, one system token and one 2-token sentence per group.
MIN_PROMPT = 8
BOS_TEXT = "<|im_start|>"
EOT_TEXT = "<|im_end|>"
SPECIAL_IDS = {BOS_TEXT: 151644, EOT_TEXT: 151645}


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
ANSWER = _pieces(
    "To| analyze| the| data|,| I| will| focus| on| the| primary| factors|:| X|,| Y|,| and| Z|.|\n\n|"
    "First|,| X| is| critical| to| understanding| the| outcome|.|"
    ' The| record| {"data":[|3|,| 5|]}| confirms| it|.|\n|'
    'Second|,| Y| and| Z| interact|;| the| value| labeled| "|alpha|"| matters| too|.|\n|'
    "Secondary| factors| A| and| B| play| a| smaller| role|;| B| comes| from| C|:\\|data|\\|b|.csv|.|\n|"
    "The| weather| is| irrelevant| here| —| even| at| the| café| in| 日本|.|\n|"
    "In| summary|,| X|,| Y|,| and| Z| drive| the| result|.| ✅|\n"
) + [EOT_TEXT]

STRUCTURAL = {BOS_TEXT, EOT_TEXT, "\n", "system", "user", "assistant"}


def piece_id(text: str) -> int:
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


def sentence_layout(prompt: int) -> list[_Sentence]:
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
