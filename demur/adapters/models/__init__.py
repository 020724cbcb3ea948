"""Model backends. Heavy ones (llama.cpp, HTTP) import their libraries lazily."""

from typing import TYPE_CHECKING

from demur._lazy import lazy_exports as _lazy_exports
from demur.adapters.models._cpu import ExtraBuffers, cpu_flags, decide_extra_buffers
from demur.adapters.models.replay import ReplayModel
from demur.adapters.models.scripted import Reply, ScriptedModel
from demur.protocols import FREE, Model, Price

if TYPE_CHECKING:
    from demur.adapters.models.llama_cpp import LlamaCppModel
    from demur.adapters.models.openai_http import OpenAICompatibleModel

_LAZY = {
    "LlamaCppModel": "demur.adapters.models.llama_cpp",
    "OpenAICompatibleModel": "demur.adapters.models.openai_http",
}


__getattr__, __dir__ = _lazy_exports(__name__, globals(), _LAZY)


__all__ = [
    "FREE",
    "ExtraBuffers",
    "LlamaCppModel",
    "Model",
    "OpenAICompatibleModel",
    "Price",
    "ReplayModel",
    "Reply",
    "ScriptedModel",
    "cpu_flags",
    "decide_extra_buffers",
]
