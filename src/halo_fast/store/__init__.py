"""Results on disk: atomic output and output names, reduce results, and the capture writers (HDF5, directories).

- :mod:`.atomic`: ``atomic_path`` (temporary file renamed into place) and ``output_beside``;
- :mod:`.reduced`: ``save_reduced`` / ``load_reduced`` (the ``reduce`` output, HDF5 or .npz);
- :mod:`.capture_h5`: ``convert`` (any capture -> the HDF5 capture ``formats.hdf5`` reads);
- :mod:`.capture_dir`: ``convert_directory`` (any capture -> a capture directory, dir-bin or dir-json).

The two writers are imported where used, not here: the CLI imports this package on every run.
"""

from .atomic import atomic_directory, atomic_path, output_beside
from .reduced import FORMATS, is_reduce_output, is_reduced_h5, load_reduced, save_reduced

__all__ = [
    "FORMATS",
    "atomic_directory",
    "atomic_path",
    "is_reduce_output",
    "is_reduced_h5",
    "load_reduced",
    "output_beside",
    "save_reduced",
]
