"""Bucket event notifications: operator-configured targets, durable per-target queues, delivery.

The S3 front end records what a request committed (``events.Change``) and hands it to the
``service.Notifier`` once answered; docs/notifications.md describes the whole.
"""
