"""Input formats, one source class each, behind one interface (``base.CaptureSource``).

``detect`` tells which format a path holds; ``halo_fast.api.open_capture`` opens it with
``base.SourceOptions``. ``load``, ``reduce`` and the analyses only use the interface
(docs/formats.md lists the formats):

- ``json_single`` (the guide's single JSON: ``json_scan`` pass 1, ``json_skeleton``,
  ``json_values`` pass 2), ``json_gz`` (the same, gzip-compressed, streamed);
- ``directory`` (metadata.json + token files), ``jsonlines`` (plain or gzip), ``hdf5``
  (what ``convert`` writes), sharing ``token_list`` and ``token_object``;
- ``gzip_stream`` (streamed inflate), ``mapped`` (windowed mmap), ``encoded`` (base64 rows).
"""

from .detect import SUPPORTED

__all__ = ["SUPPORTED"]
