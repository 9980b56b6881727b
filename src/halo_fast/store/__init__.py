"""Results on disk: atomic output and output names, reduce results, and the HDF5 capture writer.

- :mod:`.atomic`: ``atomic_path`` (temporary file renamed into place) and ``output_beside``;
- :mod:`.reduced`: ``save_reduced`` / ``load_reduced`` (the ``reduce`` output, HDF5 or .npz);
- :mod:`.capture_h5`: ``convert`` (any capture -> the HDF5 capture ``formats.hdf5`` reads).
"""

from .atomic import atomic_path, output_beside
from .reduced import FORMATS, is_reduced_h5, load_reduced, save_reduced

__all__ = ["FORMATS", "atomic_path", "is_reduced_h5", "load_reduced", "output_beside", "save_reduced"]
