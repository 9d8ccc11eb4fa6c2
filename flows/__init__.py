"""Prefect flows: orchestration only (convert_batch, nightly_catalogue)."""
