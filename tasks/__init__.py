"""Prefect tasks: thin @task wrappers over the pure stages."""
