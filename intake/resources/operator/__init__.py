"""The operator API, ``/v1/operator/...``: operator tokens only, each route role-checked.

Each resource names the least role that may call it (``operator_role``, and
``Operation.role`` for the document): viewer reads, support acts on payments,
admin manages merchants and operators (shared/domain/operators.py).
"""
