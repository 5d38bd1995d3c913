"""Running several nodes behind one address: PROXY protocol headers and shared state in PostgreSQL.

:mod:`ftpserver.cluster.proxied` reads the PROXY protocol header a load
balancer sends; :mod:`ftpserver.cluster.pgstate` and its neighbours keep the
shared state in PostgreSQL.  Only the latter import ``psycopg`` (the
``cluster`` extra), and only when ``shared_state`` is set.
"""

__all__: list[str] = []
