"""Multipart upload operations."""
