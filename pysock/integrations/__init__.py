"""pysock inside the servers Python users run: one module per server.

Each module imports its server lazily (``import pysock`` never imports a
server) and attaches a lingering close to every connection the server closes
while request bytes may still be unread:

========================================  =========================================
``pysock.integrations.uvicorn``           ``H11Protocol``, ``HttpToolsProtocol``
``pysock.integrations.gunicorn``          ``SyncWorker``, ``ThreadWorker``, ``UvicornWorker``
``pysock.integrations.hypercorn``         ``serve(app, config)``
``pysock.integrations.socketserver``      ``LingeringCloseMixin``
``pysock.integrations.cheroot``           ``Server``
``pysock.integrations.waitress``          ``serve(app, **kw)``
``pysock.integrations.tornado``           ``HTTPServer``
========================================  =========================================

The list of servers, with the extra that installs each and the versions
tested, is ``pysock.integrations._registry.SERVERS`` (this table, the
README's and ``pysock probe``'s fix hints follow it).

The policy every integration uses is :func:`policy` (set it with
:func:`configure`, or the ``PYSOCK_DRAIN_*`` environment variables for
servers started from a command line); each close's result goes to the
``pysock.integrations`` logger at debug level and to the counters of
:func:`stats`.
"""

from pysock.integrations._common import (
    DEFAULT_POLICY,
    IntegrationStats,
    configure,
    policy,
    record,
    require,
    reset_stats,
    stats,
)

__all__ = [
    "DEFAULT_POLICY",
    "IntegrationStats",
    "configure",
    "policy",
    "record",
    "require",
    "reset_stats",
    "stats",
]
