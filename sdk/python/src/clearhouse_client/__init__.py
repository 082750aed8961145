"""clearhouse_client: the Python SDK of the clearhouse payments API.

    from clearhouse_client import Client
    client = Client("ci_...", "cs_...", "https://127.0.0.1:8000", ca_file="var/tls/ca.pem")
    intent = client.payment_intents.create(amount=1050, currency="USD", payment_method={...})

It never imports the server's code: it speaks the API over HTTP only.
"""

from clearhouse_client._retry import RetryPolicy
from clearhouse_client._version import __version__
from clearhouse_client.client import Client
from clearhouse_client.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ClearhouseError,
    IdempotencyError,
    InvalidRequestError,
    PermissionDeniedError,
    RateLimitError,
    SignatureVerificationError,
)
from clearhouse_client.objects import (
    Balance,
    CustomerErasure,
    DailyReport,
    DailyReportRow,
    Event,
    PaymentIntent,
    PeriodReport,
    PeriodReportRow,
    Refund,
    Review,
    Settlement,
    WebhookDelivery,
    WebhookEndpoint,
)
from clearhouse_client.offline import DrainResult, OfflineItem
from clearhouse_client.pagination import ListObject
from clearhouse_client.webhook import Webhook, WebhookSignature

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "Balance",
    "ClearhouseError",
    "Client",
    "CustomerErasure",
    "DailyReport",
    "DailyReportRow",
    "PeriodReport",
    "PeriodReportRow",
    "DrainResult",
    "Event",
    "IdempotencyError",
    "InvalidRequestError",
    "ListObject",
    "OfflineItem",
    "PaymentIntent",
    "PermissionDeniedError",
    "RateLimitError",
    "Refund",
    "RetryPolicy",
    "Review",
    "Settlement",
    "SignatureVerificationError",
    "Webhook",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookSignature",
    "__version__",
]
