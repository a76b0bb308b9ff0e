"""Calls sent through the provider's Batch API: collected per resource, submitted, polled, routed."""

from hush.providers.batch_api.collector import BatchCallError, batch_complete

__all__ = ["BatchCallError", "batch_complete"]
