"""The API's shapes, declared once: they validate requests and generate /openapi.json."""
