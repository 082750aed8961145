"""Webhook delivery tasks (notifications queue)."""
