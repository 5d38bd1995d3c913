"""Where users' files are stored: one interface, and a backend per kind of storage.

* :mod:`~ftpserver.storage.base` - the :class:`Storage` interface and its value
  types (entries, read and upload handles); virtual paths only.
* :mod:`~ftpserver.storage.paths` - virtual path rules shared by every backend.
* :mod:`~ftpserver.storage.local` - :class:`LocalStorage`, a home folder on
  this host's filesystem (:mod:`~ftpserver.storage.localfiles` has its handles).

See docs/ARCHITECTURE.md, "Storage", for how to add a backend.
"""

from ftpserver.storage.base import Entry, ReadHandle, Resume, Sink, Storage, UploadHandle

__all__ = ["Entry", "ReadHandle", "Resume", "Sink", "Storage", "UploadHandle"]
