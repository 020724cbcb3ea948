"""Model backends. Heavy ones (llama.cpp, HTTP) import their libraries lazily."""

from demur.adapters.models.base import FREE, Model, Price
from demur.adapters.models.scripted import Reply, ScriptedModel

__all__ = ["FREE", "Model", "Price", "Reply", "ScriptedModel"]
