"""The thin Flask receiver: Vonage webhooks, the marketplace REST API, health and metrics."""
