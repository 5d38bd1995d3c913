"""The FileTransfer wire protocol, shared by the server and the client.

Everything here except :mod:`ftpproto.channel` and its splice helper
:mod:`ftpproto.splicing` is sans-IO: plain code over bytes, strings and
messages that never touches a socket or a file, so it is tested without a
network.  :mod:`ftpproto.handshake` holds the transfer handshakes that both
ends run.  See ``docs/PROTOCOL.md`` for the specification.
"""

__all__: list[str] = []
