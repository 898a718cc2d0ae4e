"""The operator plane: its own listener (admin_address), apart from the S3 API."""
