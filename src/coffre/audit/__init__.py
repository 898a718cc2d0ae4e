"""The tamper-evident audit trail: one record per request, hash-chained, checkpoints signed.

A consumer layer (DESIGN.md §2): the S3 front end hands it one event per request after the
response is built (the metadata commit is done); nothing here sits inside a handler's logic.
Format and verification procedure: docs/audit.md.
"""
