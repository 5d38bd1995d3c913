"""What every session shares, whichever process (or, later, host) serves it.

* :mod:`~ftpserver.state.protocols`: one typed Protocol per shared concern
  (session slots, sessions per user, bans, bandwidth);
  :mod:`~ftpserver.state.ledger` holds the quota ledger's, and
  :mod:`~ftpserver.state.quotas` its worker proxy.
* :mod:`~ftpserver.state.shared`: :class:`~ftpserver.state.shared.Shared`, the
  five protocols a server's sessions use, and
  :class:`~ftpserver.state.shared.LocalState`, their in-process implementation.
* :mod:`~ftpserver.state.pipe`: the worker's side of the worker pipe, one
  small typed proxy per concern over one call primitive.
* :mod:`~ftpserver.state.owner`: the supervisor's side, which answers only
  the listed methods and gives back what a dead worker held.
"""
