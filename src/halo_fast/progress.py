"""Progress bars on stderr for long passes over a file."""

from __future__ import annotations


class NoProgress:
    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def update(self, n: int) -> None:
        pass


def progress_bar(total: int, enabled: bool, description: str):
    """A tqdm bar on stderr, or (without importing tqdm: a short run's time counts) one that shows nothing."""
    if not enabled:
        return NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=description, leave=False)
