"""Load tools: `python -m tests.load.bench` (what `make bench` runs) and a locustfile.

Nothing here is a pytest test: no module is named ``test_*.py``.
"""
