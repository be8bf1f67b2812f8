"""HTTP API (FastAPI): one router per resource, auth dependencies, the static UI."""
