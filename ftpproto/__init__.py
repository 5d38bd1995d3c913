"""The FileTransfer wire protocol, shared by the server and the client.

Everything here except :mod:`ftpproto.channel` is sans-IO: plain code over
bytes and strings that never touches a socket, so it is tested without a
network.  See ``docs/PROTOCOL.md`` for the specification.
"""

__all__: list[str] = []
