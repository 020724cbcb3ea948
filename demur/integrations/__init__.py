"""Integrations with other frameworks, each behind its own extra and imported only on use."""
