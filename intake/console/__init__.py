"""The operator web console at ``/console``: server-rendered pages over the operator services.

Served by the API process, not part of the JSON API (nor of its OpenAPI document):
``routes.routes(...)`` lists its pages, ``intake/console/session.py`` is its middleware
(session cookie, roles, CSRF, security headers), the templates and the stylesheet ship in
the package. No JavaScript: plain forms, so the Content-Security-Policy forbids all scripts.
"""
