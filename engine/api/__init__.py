"""The operator surface: HTTP API with OpenAPI, Prometheus metrics, the control CLI.

``server`` (the component), ``routes`` (handlers + their OpenAPI description),
``openapi`` (the document builder), ``calls`` (live and recent calls),
``metrics`` (prometheus_client), ``client``/``cli`` (the `dragonpbx calls` … commands).
"""
