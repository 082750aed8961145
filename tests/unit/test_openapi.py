import re

from intake.openapi import spec


def _templates(nodes):
    for node in nodes:
        if node.resource is not None:
            yield node.uri_template
        yield from _templates(node.children)


def test_every_route_is_documented(tmp_path):
    from intake.app import create_app
    from shared.config import Settings

    app = create_app(
        Settings().replace(key_dir=str(tmp_path)),
        engine=object(),
        dispatch=lambda *a: None,
        redis_client=object(),
    )
    routes = {re.sub(r"\{\w+\}", "{id}", t) for t in _templates(app._router._roots)}
    assert routes == set(spec()["paths"])


def test_every_operation_has_responses():
    for path, ops in spec()["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (path, method)
