"""End-to-end tests: a real uvicorn server on 127.0.0.1 and a real WebSocket client.

The served application is :mod:`tests.e2e.app`; the tests never import it (it
registers handlers in the default registry), only what is shared here.
"""

#: Text of the exception the ``boom`` handler raises: it must reach the log, never the client.
BOOM_TEXT = "e2e-secret-exception-detail"
