"""Adapters to the outside world: model backends, and later retrievers and frameworks."""
