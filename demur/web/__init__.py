"""HTTP plumbing shared by the gateway (`demur serve`) and the review app (`demur review`):
request limits, uvicorn serving with JSON logs, and host checks."""
