"""The benchmark's results as typed rows: what :mod:`.runner` produces and :mod:`.report` renders.

Why typed rows: the runner adds what it learns to a row as it goes (the check, the
ratios to a floor or to halo_fast), and the report must show exactly those; named
fields let both sides agree by attribute instead of by dict keys that either could
misspell. Each class writes the JSON that ``bench --json`` has always printed
(``to_json``: the same keys, in the same order, a key left out where the old dicts
never set it) and reads it back (``from_json``), so a saved result renders again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

OK, FAILED, SKIPPED = "ok", "failed", "skipped"
#: check texts that fail the run: a reader disagreed with the reference, or there was none to compare with
FAILING_CHECKS = ("MISMATCH", "no reference")


def _set(pairs) -> dict:
    """The (key, value) pairs whose value is set: the old dicts left those keys out."""
    return {key: value for key, value in pairs if value is not None}


def _without_note(row) -> dict:
    """Every field of an ok ``row`` but the note, unset ones too (as null): what an ok row has always held."""
    return {key: value for key, value in dataclasses.asdict(row).items() if key != "note"}


def _pick(cls, data: dict) -> dict:
    """The entries of ``data`` that are fields of ``cls`` (a saved result may carry keys we do not model)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: value for key, value in data.items() if key in names}


@dataclass
class Outcome:
    """What every measurement carries first: whether it ran (OK, FAILED, SKIPPED) and, if not, why."""

    status: str  # OK, FAILED or SKIPPED
    note: str | None = None  # why it failed or was skipped

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def failed(self) -> bool:
        return self.status == FAILED


@dataclass
class Timing(Outcome):
    """One command timed in fresh processes (see :func:`.processes.measure`), or why it was not.

    The times are whole processes; ``inner_s``, ``import_s`` and ``check_s`` are what a
    contender child reports about itself (its work, its imports, its fingerprinting),
    absent for commands that are not contenders (``cat``, ``gzip -dc``, ``convert``).
    """

    median_s: float | None = None
    min_s: float | None = None
    runs_s: list[float] | None = None
    peak_rss_mb: float | None = None
    result: dict | None = None  # the warm-up run's JSON line: count, crc32, seconds, ...
    inner_s: float | None = None
    import_s: float | None = None
    check_s: float | None = None

    @property
    def measured(self) -> bool:
        """Whether there are times (a reference made for the checks alone has only a result)."""
        return self.median_s is not None

    def to_json(self) -> dict:
        note = _set([("note", self.note)])
        if not self.measured:  # skipped, or failed before any timed run: the reason follows the status
            return {"status": self.status, **note}
        times = {
            "median_s": self.median_s,
            "min_s": self.min_s,
            "runs_s": self.runs_s,
            "peak_rss_mb": self.peak_rss_mb,
            "result": self.result,
        }
        child = _set([("inner_s", self.inner_s), ("import_s", self.import_s), ("check_s", self.check_s)])
        # a note on a timed run says its timed runs disagreed with the warm-up: it has always come last
        return {"status": self.status, **times, **child, **note}

    @classmethod
    def from_json(cls, data: dict) -> Timing:
        return cls(**_pick(cls, data))


@dataclass
class ContenderRow:
    """One line of a contender table: who ran which task, how it went, and how it compares.

    Which comparisons are set depends on the table: the main tables fill ``mb_per_s``
    and ``ratio`` (median / halo_fast's), the .bin directory and gzip sections
    ``vs_floor`` (median / the floor's) and ``vs_floor_work`` (the same for the work),
    the HDF5 section ``json_over`` and ``json_work_over`` (halo_fast decoding the JSON /
    this). An unset comparison is ``None`` and left out of the JSON.
    """

    task: str
    contender: str
    timing: Timing
    predicted_mb: int | None = None  # main tables: the memory model's estimate of the peak
    npy: str | None = None  # format sections' reduce rows: where the warm-up run saved its result
    check: str | None = None  # "reference", "same bits", "allclose (...)", "MISMATCH (...)", ...
    mb_per_s: float | None = None
    ratio: float | None = None
    vs_floor: float | None = None
    vs_floor_work: float | None = None
    json_over: float | None = None
    json_work_over: float | None = None

    #: the JSON's first two keys; the main tables have always put the task first
    KEY_ORDER: ClassVar[tuple[str, str]] = ("task", "contender")

    @property
    def ok(self) -> bool:
        return self.timing.ok

    @property
    def failed(self) -> bool:
        """A run failed or the reader disagreed; a skipped contender fails nothing."""
        return self.timing.status == FAILED or (self.check or "").startswith(FAILING_CHECKS)

    def to_json(self) -> dict:
        head = {key: getattr(self, key) for key in self.KEY_ORDER}
        rest = [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]
        extras = _set((key, value) for key, value in rest if key not in ("task", "contender", "timing"))
        return {**head, **self.timing.to_json(), **extras}

    @classmethod
    def from_json(cls, data: dict) -> ContenderRow:
        return cls(timing=Timing.from_json(data), **_pick(cls, data))


@dataclass
class FormatRow(ContenderRow):
    """A row of a format section (.bin directory, HDF5, gzip): the same fields, the label first in the JSON."""

    KEY_ORDER: ClassVar[tuple[str, str]] = ("contender", "task")


@dataclass
class Brief(Outcome):
    """halo_fast's time on one capture as the scaling and threads tables show it (per GB, per second)."""

    median_s: float | None = None
    min_s: float | None = None
    s_per_gb: float | None = None
    mb_per_s: float | None = None
    peak_rss_mb: float | None = None
    inner_s: float | None = None

    @classmethod
    def of(cls, timing: Timing, file_bytes: int) -> Brief:
        """The brief of a timing of halo_fast on a file of ``file_bytes``."""
        if not timing.ok:
            return cls(timing.status, timing.note)
        return cls(
            status=OK,
            median_s=timing.median_s,
            min_s=timing.min_s,
            s_per_gb=timing.median_s / (file_bytes / 1e9),
            mb_per_s=file_bytes / 1e6 / timing.median_s,
            peak_rss_mb=timing.peak_rss_mb,
            inner_s=timing.inner_s,
        )

    def to_json(self) -> dict:
        if not self.ok:  # the note is there even when there is none (None)
            return {"status": self.status, "note": self.note}
        return _without_note(self)

    @classmethod
    def from_json(cls, data: dict) -> Brief:
        return cls(**_pick(cls, data))


@dataclass
class ScalingRow:
    """halo_fast on one capture size: each task's brief."""

    size: str  # the size's label, "20MB", "1GB"
    mb: float
    tokens: int
    tasks: dict[str, Brief] = field(default_factory=dict)  # task -> brief

    @property
    def failed(self) -> bool:
        return any(brief.failed for brief in self.tasks.values())

    def to_json(self) -> dict:
        return {
            "size": self.size,
            "mb": self.mb,
            "tokens": self.tokens,
            **{t: b.to_json() for t, b in self.tasks.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> ScalingRow:
        head = ("size", "mb", "tokens")
        tasks = {task: Brief.from_json(brief) for task, brief in data.items() if task not in head}
        return cls(data["size"], data["mb"], data["tokens"], tasks)


@dataclass
class ThreadRow:
    """One task on the main capture with each NUMBA_NUM_THREADS count."""

    task: str
    counts: dict[int, Brief] = field(default_factory=dict)  # thread count -> brief, in the order run

    @property
    def failed(self) -> bool:
        return any(brief.failed for brief in self.counts.values())

    def to_json(self) -> dict:  # the counts are the JSON's keys, as text
        return {"task": self.task, **{str(n): brief.to_json() for n, brief in self.counts.items()}}

    @classmethod
    def from_json(cls, data: dict) -> ThreadRow:
        return cls(data["task"], {int(n): Brief.from_json(b) for n, b in data.items() if n != "task"})


@dataclass
class ColdStart(Outcome):
    """``halo_fast.reduce`` in a new process with an empty numba cache, then warm: what compiling costs once."""

    mb: float | None = None
    cold_s: float | None = None
    cold_inner_s: float | None = None
    warm_median_s: float | None = None
    warm_inner_s: float | None = None
    compile_s: float | None = None
    cold_rss_mb: float | None = None
    warm_rss_mb: float | None = None

    def to_json(self) -> dict:
        if not self.ok:
            return {"status": self.status, "note": self.note}
        return _without_note(self)

    @classmethod
    def from_json(cls, data: dict) -> ColdStart:
        return cls(**_pick(cls, data))


@dataclass
class FormatSection:
    """One input of a format section: its manifest, the bytes its MB/s are of, and its rows."""

    input: dict  # the manifest from :mod:`.data`
    mb: float
    rows: list[ContenderRow] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"input": self.input, "mb": self.mb, "rows": [row.to_json() for row in self.rows]}

    @classmethod
    def from_json(cls, data: dict) -> FormatSection:
        # the HDF5 section's yardstick is the main table's row, copied with its key order (task first)
        rows = [(ContenderRow if next(iter(row)) == "task" else FormatRow).from_json(row) for row in data["rows"]]
        return cls(data["input"], data["mb"], rows)


class TimedRow:
    """A row that is one :class:`Timing` of a whole command: ok or failed as its timing is."""

    timing: Timing

    @property
    def ok(self) -> bool:
        return self.timing.ok

    @property
    def failed(self) -> bool:
        return self.timing.failed


@dataclass
class ConvertRow(TimedRow):
    """``python -m halo_fast convert`` on one capture size, and the size of the .h5 it wrote."""

    size: str
    mb: float
    tokens: int
    output_mb: float | None
    timing: Timing

    def to_json(self) -> dict:
        head = {"size": self.size, "mb": self.mb, "tokens": self.tokens, "output_mb": self.output_mb}
        return {**head, **self.timing.to_json()}

    @classmethod
    def from_json(cls, data: dict) -> ConvertRow:
        return cls(data["size"], data["mb"], data["tokens"], data.get("output_mb"), Timing.from_json(data))


@dataclass
class EvictRow(TimedRow):
    """A whole ``python -m halo_fast`` command on the main capture: ``reduce``, and ``evict`` with every
    policy at three budgets; ``ratio``: its time over ``reduce``'s in the same run."""

    command: str
    mb: float
    timing: Timing
    ratio: float | None = None

    def to_json(self) -> dict:
        return {"command": self.command, "mb": self.mb, **self.timing.to_json(), "ratio": self.ratio}

    @classmethod
    def from_json(cls, data: dict) -> EvictRow:
        return cls(data["command"], data["mb"], Timing.from_json(data), data.get("ratio"))


@dataclass
class BatchRow(TimedRow):
    """Eight captures through one job as a whole: ``how`` is a loop of single commands or ``batch`` with
    N workers; ``speedup``: the loop's time over this row's, in the same run."""

    job: str
    how: str
    captures: int
    mb: float
    timing: Timing
    speedup: float | None = None

    def to_json(self) -> dict:
        head = {"job": self.job, "how": self.how, "captures": self.captures, "mb": self.mb}
        return {**head, **self.timing.to_json(), "speedup": self.speedup}

    @classmethod
    def from_json(cls, data: dict) -> BatchRow:
        return cls(data["job"], data["how"], data["captures"], data["mb"], Timing.from_json(data), data.get("speedup"))


@dataclass
class Results:
    """Everything one benchmark run measured; a section that did not run is empty or ``None``.

    ``to_json`` is the dict ``bench --json`` prints (the CLI adds ``machine``,
    ``command`` and ``config``); its ``ok`` is :attr:`ok`.
    """

    capture: dict  # the main capture's manifest
    tasks: dict[str, list[ContenderRow]] = field(default_factory=dict)  # "load", "reduce", "read" -> rows
    scaling: list[ScalingRow] = field(default_factory=list)
    threads: list[ThreadRow] = field(default_factory=list)
    cold_start: ColdStart | None = None
    directory: FormatSection | None = None
    hdf5: FormatSection | None = None
    gzip: list[FormatSection] | None = None  # one per gzip input
    convert: list[ConvertRow] | None = None
    evict: list[EvictRow] | None = None
    batch: list[BatchRow] | None = None
    large: FormatSection | None = None  # a capture larger than memory, read from disk
    rss_floor_mb: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No run failed and no reader disagreed with halo_fast (skips are fine): the command's exit code."""
        parts: list[Any] = [row for rows in self.tasks.values() for row in rows]
        parts += self.scaling
        parts += self.threads
        parts += [self.cold_start] if self.cold_start else []
        for section in (self.directory, self.hdf5, *(self.gzip or []), self.large):
            parts += section.rows if section else []
        parts += self.convert or []
        parts += self.evict or []
        parts += self.batch or []
        return not any(part.failed for part in parts)

    def to_json(self) -> dict:
        out = {
            "capture": self.capture,
            "tasks": {task: [row.to_json() for row in rows] for task, rows in self.tasks.items()},
            "scaling": [row.to_json() for row in self.scaling],
            "threads": [row.to_json() for row in self.threads],
            "cold_start": self.cold_start.to_json() if self.cold_start else None,
        }
        if self.directory is not None:
            out["directory"] = self.directory.to_json()
        if self.hdf5 is not None:
            out["hdf5"] = self.hdf5.to_json()
        if self.gzip is not None:
            out["gzip"] = {"inputs": [part.to_json() for part in self.gzip]}
        if self.convert is not None:
            out["convert"] = {"rows": [row.to_json() for row in self.convert]}
        if self.evict is not None:
            out["evict"] = {"rows": [row.to_json() for row in self.evict]}
        if self.batch is not None:
            out["batch"] = {"rows": [row.to_json() for row in self.batch]}
        if self.large is not None:
            out["large"] = self.large.to_json()
        return {**out, "rss_floor_mb": self.rss_floor_mb, "notes": self.notes, "ok": self.ok}

    @classmethod
    def from_json(cls, data: dict) -> Results:
        """The rows of a result dict (``bench --json``'s output, with or without the CLI's additions)."""

        def section(key: str) -> FormatSection | None:
            return FormatSection.from_json(data[key]) if data.get(key) else None

        return cls(
            capture=data["capture"],
            tasks={task: [ContenderRow.from_json(r) for r in rows] for task, rows in data.get("tasks", {}).items()},
            scaling=[ScalingRow.from_json(row) for row in data.get("scaling") or []],
            threads=[ThreadRow.from_json(row) for row in data.get("threads") or []],
            cold_start=ColdStart.from_json(data["cold_start"]) if data.get("cold_start") else None,
            directory=section("directory"),
            hdf5=section("hdf5"),
            gzip=[FormatSection.from_json(p) for p in data["gzip"]["inputs"]] if data.get("gzip") else None,
            convert=[ConvertRow.from_json(row) for row in data["convert"]["rows"]] if data.get("convert") else None,
            evict=[EvictRow.from_json(row) for row in data["evict"]["rows"]] if data.get("evict") else None,
            batch=[BatchRow.from_json(row) for row in data["batch"]["rows"]] if data.get("batch") else None,
            large=section("large"),
            rss_floor_mb=data.get("rss_floor_mb"),
            notes=list(data.get("notes", [])),
        )
