"""Local file helpers that the server and the client share, apart from the protocol.

:mod:`ftpproto` is the wire protocol and does no file I/O outside its
channel; the client never imports the server.  What both ends do with their
own files around a transfer (write until the disk fails, hash a file or part
of one, hash beside ``sendfile``) lives here, in :mod:`ftpfiles.files`.
"""

__all__: list[str] = []
