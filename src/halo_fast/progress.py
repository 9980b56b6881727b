"""Progress bars on stderr for long passes over a file."""

from __future__ import annotations


class NoProgress:
    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def update(self, n: int) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass


def progress_bar(total: int, enabled: bool, description: str, unit: str = "B"):
    """A tqdm bar on stderr, or (without importing tqdm: a short run's time counts) one that shows nothing.

    One line per phase: the bar is removed when its phase ends (``leave=False``), so a run
    ends on a clean line.
    """
    if not enabled:
        return NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, unit_scale=unit == "B", desc=description, leave=False)
