"""A BERT or MPNet sentence encoder in numpy: `tokenizers` for text, memory-mapped weights.

It reproduces sentence-transformers' Transformer -> mean Pooling -> Normalize pipeline for the
two architectures the built-in embedders use, without torch (a 700 MB install). Texts longer
than `max_seq_length` tokens (from sentence_bert_config.json) are truncated, special tokens
included, exactly as sentence-transformers does. The embedding benchmark's baseline.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from benchmarks.numpy_encoder.safetensors import load_safetensors

Arch = Literal["bert", "mpnet"]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class _LayerNames:
    """Where one encoder layer's weights live in the checkpoint, per architecture."""

    query: str
    key: str
    value: str
    attention_out: str
    attention_norm: str
    intermediate: str
    output: str
    output_norm: str


_NAMES: dict[Arch, _LayerNames] = {
    "bert": _LayerNames(
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "attention.output.LayerNorm",
        "intermediate.dense",
        "output.dense",
        "output.LayerNorm",
    ),
    "mpnet": _LayerNames(
        "attention.attn.q",
        "attention.attn.k",
        "attention.attn.v",
        "attention.attn.o",
        "attention.LayerNorm",
        "intermediate.dense",
        "output.dense",
        "output.LayerNorm",
    ),
}

# Abramowitz & Stegun 7.1.26: erf to within 1.5e-7, below float32 resolution near 1.
_ERF_P = np.float32(0.3275911)
_ERF_A = tuple(
    np.float32(a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)
)


def _read_json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as file:
        data = json.load(file)
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def _gelu(x: F32) -> F32:
    """The exact (erf) GELU both models were trained with, not the tanh approximation.

    gelu(x) = x/2 * (1 + erf(x/sqrt 2)). With erfc(|z|) ~ poly(t) * t * exp(-z^2) (A&S 7.1.26),
    that is x - x/2 * erfc for x >= 0 and x/2 * erfc below. In-place steps keep the
    temporaries to two arrays the size of `x`, since this runs on the widest activations.
    """
    z = np.abs(x)
    z *= np.float32(1 / math.sqrt(2))
    t = z * _ERF_P
    t += 1
    np.reciprocal(t, out=t)
    erfc = t * _ERF_A[0]
    for coefficient in _ERF_A[1:]:
        erfc += coefficient
        erfc *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    erfc *= z
    half: F32 = np.multiply(erfc, x, out=erfc)
    half *= np.float32(0.5)
    result: F32 = np.where(x >= 0, x - half, half)
    return result


def _layer_norm(x: F32, weight: F32, bias: F32, eps: float) -> F32:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    result: F32 = centred / np.sqrt(variance + np.float32(eps)) * weight + bias
    return result


def relative_position_buckets(
    length: int, num_buckets: int = 32, max_distance: int = 128
) -> npt.NDArray[np.int64]:
    """MPNet's (length, length) relative-position bucket ids, computed in float32 like torch."""
    position = np.arange(length, dtype=np.int64)
    n = -(position[None, :] - position[:, None])
    half = num_buckets // 2
    buckets = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    max_exact = half // 2
    with np.errstate(divide="ignore"):
        scaled = (
            np.log(n.astype(np.float32) / np.float32(max_exact))
            / np.float32(math.log(max_distance / max_exact))
            * np.float32(half - max_exact)
        )
    large = max_exact + np.where(n < max_exact, 0, scaled).astype(np.int64)
    large = np.minimum(large, half - 1)
    result: npt.NDArray[np.int64] = buckets + np.where(n < max_exact, n, large)
    return result


class SentenceEncoder:
    """One BERT or MPNet sentence-transformers model directory, ready to encode texts."""

    def __init__(self, model_dir: Path, arch: Arch) -> None:
        from tokenizers import Tokenizer

        config = _read_json(model_dir / "config.json")
        pooling = _read_json(model_dir / "1_Pooling" / "config.json")
        other_modes = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
        if other_modes != ["pooling_mode_mean_tokens"]:
            raise ValueError(f"{model_dir}: only mean pooling is supported, found {other_modes}")
        if config.get("hidden_act") != "gelu":
            raise ValueError(f"{model_dir}: unsupported activation {config.get('hidden_act')}")
        self.arch: Arch = arch
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.pad_id = int(config["pad_token_id"])
        self.max_tokens = int(_read_json(model_dir / "sentence_bert_config.json")["max_seq_length"])
        self._names = _NAMES[arch]

        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json pins padding and truncation to 128; sentence-transformers overrides both.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.max_tokens)
        self._tokenizer = tokenizer
        self._weights = load_safetensors(model_dir / "model.safetensors")
        missing = [name for name in self._required() if name not in self._weights]
        if missing:
            raise ValueError(f"{model_dir}/model.safetensors lacks {', '.join(missing[:3])}")

    def _required(self) -> list[str]:
        names = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight"]
        names += ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
        if self.arch == "bert":
            names.append("embeddings.token_type_embeddings.weight")
        else:
            names.append("encoder.relative_attention_bias.weight")
        for layer in range(self.layers):
            for part in vars(self._names).values():
                names += [f"encoder.layer.{layer}.{part}.{kind}" for kind in ("weight", "bias")]
        return names

    def encode(self, texts: list[str], batch_size: int) -> F32:
        """Mean-pooled token states (not yet normalised), batched by similar length."""
        ids = [np.asarray(e.ids, dtype=np.int64) for e in self._tokenizer.encode_batch(texts)]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.empty((len(ids), self.hidden), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            length = max(len(ids[i]) for i in chunk)
            batch = np.full((len(chunk), length), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(chunk), length), dtype=bool)
            for row, index in enumerate(chunk):
                batch[row, : len(ids[index])] = ids[index]
                mask[row, : len(ids[index])] = True
            out[chunk] = self._forward(batch, mask)
        return out

    def _w(self, name: str) -> F32:
        weight: F32 = self._weights[name]
        return weight

    def _linear(self, x: F32, name: str) -> F32:
        # One 2-D matmul (a single BLAS call) rather than one per batch row.
        flat = x.reshape(-1, x.shape[-1]) @ self._w(f"{name}.weight").T
        result: F32 = (flat + self._w(f"{name}.bias")).reshape(*x.shape[:-1], flat.shape[-1])
        return result

    def _norm(self, x: F32, name: str) -> F32:
        return _layer_norm(x, self._w(f"{name}.weight"), self._w(f"{name}.bias"), self.eps)

    def _embeddings(self, ids: npt.NDArray[np.int64]) -> F32:
        length = ids.shape[1]
        x: F32 = self._w("embeddings.word_embeddings.weight")[ids]
        if self.arch == "bert":
            x = x + self._w("embeddings.position_embeddings.weight")[:length]
            x = x + self._w("embeddings.token_type_embeddings.weight")[0]
        else:
            # MPNet (like RoBERTa) numbers real tokens from pad_id + 1; padding keeps pad_id.
            real = ids != self.pad_id
            positions = np.cumsum(real, axis=1) * real + self.pad_id
            x = x + self._w("embeddings.position_embeddings.weight")[positions]
        return self._norm(x, "embeddings.LayerNorm")

    def _forward(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_]) -> F32:
        length = ids.shape[1]
        x = self._embeddings(ids)
        # Added to the attention scores: MPNet's (heads, length, length) position bias, then
        # -inf on padding keys. Kept apart so no (batch, heads, length, length) copy is made.
        biases = []
        if self.arch == "mpnet":
            table = self._w("encoder.relative_attention_bias.weight")
            biases.append(table[relative_position_buckets(length)].transpose(2, 0, 1))
        biases.append(np.where(mask, np.float32(0), np.float32(-np.inf))[:, None, None, :])
        for layer in range(self.layers):
            x = self._layer(x, f"encoder.layer.{layer}", biases)
        weights = mask[..., None].astype(np.float32)
        pooled: F32 = (x * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return pooled

    def _layer(self, x: F32, prefix: str, biases: list[F32]) -> F32:
        batch, length, hidden = x.shape
        heads, size = self.heads, hidden // self.heads
        names = self._names

        def split(t: F32) -> F32:
            return t.reshape(batch, length, heads, size).transpose(0, 2, 1, 3)

        q = split(self._linear(x, f"{prefix}.{names.query}"))
        k = split(self._linear(x, f"{prefix}.{names.key}"))
        v = split(self._linear(x, f"{prefix}.{names.value}"))
        scores = q @ k.transpose(0, 1, 3, 2)
        scores /= np.float32(math.sqrt(size))
        for bias in biases:
            scores += bias
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores, out=scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        attended = self._linear(context, f"{prefix}.{names.attention_out}")
        x = self._norm(attended + x, f"{prefix}.{names.attention_norm}")
        inner = _gelu(self._linear(x, f"{prefix}.{names.intermediate}"))
        out = self._linear(inner, f"{prefix}.{names.output}")
        return self._norm(out + x, f"{prefix}.{names.output_norm}")
