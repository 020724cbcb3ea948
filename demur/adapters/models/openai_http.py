"""A backend for any OpenAI-compatible HTTP endpoint: OpenAI, vLLM, llama.cpp, Ollama, LM Studio.

Chat requests go to `POST {base_url}/chat/completions`, prompt requests to the legacy
`POST {base_url}/completions`. Requests go through aiohttp by default, or httpx (the one that
speaks HTTP/2); either is imported only when a model is built, so importing demur needs
neither (`pip install 'demur[http]'`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import urlsplit

from pydantic import ValidationError

from demur.adapters.models._http_transport import (
    AiohttpTransport,
    ConnectFailed,
    HttpReply,
    HttpxTransport,
    RequestTimeout,
    Transport,
    TransportChoice,
    TransportError,
    TransportName,
    in_background,
    resolve,
)
from demur.bases import ModelBase
from demur.errors import (
    ConfigError,
    ContextOverflowError,
    MissingDependencyError,
    ModelError,
    ModelNotFoundError,
    ModelTimeoutError,
    PermanentModelError,
    RateLimitError,
    ServerError,
)
from demur.prompts import ChatPrompt, Prompt
from demur.protocols import FREE, Price
from demur.types import (
    Completion,
    Generation,
    GenerationRequest,
    TokenAlternative,
    TokenLogprob,
    Usage,
)

_SNIPPET = 200
# How servers word "the prompt does not fit": OpenAI, vLLM, llama.cpp, TGI, Ollama.
_OVERFLOW = re.compile(
    r"context[ _-]?(length|window)|maximum context|too many tokens|(prompt|input) is too long|"
    r"exceeds? the (model'?s? )?(maximum|max|context)|reduce the length",
    re.IGNORECASE,
)
# llama.cpp's server answers HTTP 500 when asked for logprobs it cannot give; that is permanent.
_NO_LOGPROBS = re.compile(r"logprobs (is|are) not supported", re.IGNORECASE)


def _require_h2() -> None:
    try:
        import h2  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("h2", "http2", "HTTP/2 to the upstream (http2=True)") from exc


def _check_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"base_url must be an http(s) URL such as 'http://127.0.0.1:8000/v1' or "
            f"'https://api.openai.com/v1', got {base_url!r}"
        )
    return base_url.rstrip("/")


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "..."


def _server_message(response: HttpReply) -> str:
    """The error text a server put in its body, in any of the common shapes."""
    try:
        body = response.json()
    except ValueError:
        return _snippet(response.text) or "(empty body)"
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            for key in ("message", "detail", "msg"):
                if error.get(key):
                    return _snippet(str(error[key]))
        elif error:
            return _snippet(str(error))
        if body.get("detail"):
            return _snippet(str(body["detail"]))
    return _snippet(response.text)


class OpenAICompatibleModel(ModelBase):
    """A model served over an OpenAI-compatible API.

        model = OpenAICompatibleModel("smollm", base_url="http://127.0.0.1:8000/v1")

    `model` is the name sent to the server (default: `name`). The API key is `api_key`, else
    the environment variable `api_key_env` read at construction; with neither, no
    Authorization header is sent, which local servers accept. Logprobs are asked for only
    when the request wants them and `supports_logprobs` is true; a server that sends none
    yields `Completion.tokens = None`, never made-up values.

    Some servers (llama.cpp's among them) ignore `n`. When fewer choices come back than
    asked, the missing ones are fetched with extra concurrent calls of n=1; their usage is
    added up, and a set `seed` is offset per extra call so seeded samples still differ.

    Failures map onto demur's errors so the router can retry the transient ones: timeouts
    raise ModelTimeoutError; refused or dropped connections, HTTP 5xx and unreadable bodies
    raise ServerError; HTTP 429 raises RateLimitError; a prompt too long for the context
    raises ContextOverflowError; 404 raises ModelNotFoundError; other 4xx raise
    PermanentModelError.

    Connections are pooled and kept alive between calls: up to `max_connections` open at
    once, all of them kept alive when idle (a gateway's concurrent routes reuse them rather
    than reconnecting). `timeout_s` bounds each request as a whole.

    `transport` picks the HTTP client: "aiohttp" (HTTP/1.1, the lighter on CPU per request),
    "httpx", or "auto" (the default): httpx when `http2=True`, else aiohttp when installed,
    else httpx. `self.transport` holds the one chosen. `http2=True` negotiates HTTP/2 with
    upstreams that offer it over TLS (`pip install 'demur[http2]'`); plain `http://`
    upstreams speak HTTP/1.1. Like httpx, the aiohttp transport honours HTTP(S)_PROXY and
    NO_PROXY, read when it opens, and checks certificates against certifi's bundle unless
    SSL_CERT_FILE or SSL_CERT_DIR is set.

    Connections belong to the event loop that opened them: a call from another loop opens a
    new pool, and the previous one is closed on its own loop once its calls are done.
    """

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 60.0,
        max_tokens: int = 64,
        price: Price = FREE,
        default_prompt: Prompt | None = None,
        supports_logprobs: bool = True,
        provider: str = "openai",
        context_window: int | None = None,
        max_connections: int = 100,
        http2: bool = False,
        transport: TransportChoice = "auto",
    ) -> None:
        if not name:
            raise ConfigError("OpenAICompatibleModel needs a non-empty name")
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        if max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {max_tokens}")
        if context_window is not None and context_window < 1:
            raise ConfigError(f"context_window must be >= 1 tokens, got {context_window}")
        if max_connections < 1:
            raise ConfigError(f"max_connections must be >= 1, got {max_connections}")
        self.transport: TransportName = resolve(transport, http2=http2)
        if http2:
            _require_h2()
        self.name = name
        self.base_url = _check_base_url(base_url)
        self.model = model or name
        self.api_key_env = api_key_env
        self._api_key = api_key if api_key is not None else os.environ.get(api_key_env)
        self._headers = dict(headers or {})
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.price = price
        self.default_prompt: Prompt = default_prompt or ChatPrompt()
        self.supports_logprobs = supports_logprobs
        self.provider = provider
        self.context_window = context_window
        self.max_connections = max_connections
        self.http2 = http2
        self._client: Transport | None = None

    @property
    def model_id(self) -> str:
        """The upstream's model id, as sent in each request's `model` field."""
        return self.model

    def __repr__(self) -> str:
        return (
            f"OpenAICompatibleModel(name={self.name!r}, base_url={self.base_url!r}, "
            f"model={self.model!r})"
        )

    # --- lifecycle ---------------------------------------------------------------------------

    def _get_client(self) -> Transport:
        client = self._client
        if client is not None and client.loop is asyncio.get_running_loop():
            return client
        # Pooled connections belong to the loop that opened them; a call from another loop
        # (e.g. the router's sync facade in a second thread) needs a pool of its own.
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        headers.update(self._headers)
        fresh: Transport
        if self.transport == "aiohttp":
            fresh = AiohttpTransport(
                base_url=self.base_url,
                headers=headers,
                timeout_s=self.timeout_s,
                max_connections=self.max_connections,
            )
        else:
            fresh = HttpxTransport(
                headers=headers,
                timeout_s=self.timeout_s,
                max_connections=self.max_connections,
                http2=self.http2,
            )
        self._client = fresh
        if client is not None:
            in_background(client.aclose())
        return fresh

    async def aclose(self) -> None:
        """Close the HTTP connections; a later call opens new ones."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # --- generation --------------------------------------------------------------------------

    async def agenerate(self, request: GenerationRequest) -> Generation:
        first = await self._call(request, request.n, request.seed)
        completions = list(first.completions)
        usage = first.usage
        missing = request.n - len(completions)
        if missing > 0:
            for generation in await self._fill(request, missing):
                completions.extend(generation.completions)
                usage = usage + generation.usage
        return Generation(
            model=self.name,
            completions=tuple(completions[: request.n]),
            usage=usage,
            response_id=first.response_id,
        )

    async def _fill(self, request: GenerationRequest, missing: int) -> list[Generation]:
        """`missing` concurrent calls of n=1; the first failure cancels the rest."""
        tasks = [
            asyncio.ensure_future(
                self._call(request, 1, None if request.seed is None else request.seed + i)
            )
            for i in range(1, missing + 1)
        ]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            raise

    def _body(self, request: GenerationRequest, n: int, seed: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "n": n,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if seed is not None:
            body["seed"] = seed
        wants_logprobs = request.logprobs and self.supports_logprobs
        if request.messages is not None:
            body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
            if wants_logprobs:
                body["logprobs"] = True
                body["top_logprobs"] = request.top_logprobs
        else:
            body["prompt"] = request.prompt or ""
            if wants_logprobs:
                body["logprobs"] = request.top_logprobs
        return body

    async def _call(self, request: GenerationRequest, n: int, seed: int | None) -> Generation:
        chat = request.messages is not None
        url = f"{self.base_url}/chat/completions" if chat else f"{self.base_url}/completions"
        try:
            response = await self._get_client().post_json(url, self._body(request, n, seed))
        except RequestTimeout as exc:
            raise ModelTimeoutError(
                f"{self.name}: no answer from {url} within timeout_s={self.timeout_s:g}s "
                f"({exc.kind}). Raise timeout_s or check that the server is not overloaded.",
                model=self.name,
            ) from None
        except ConnectFailed as exc:
            raise ServerError(
                f"{self.name}: cannot connect to {url} ({_snippet(exc.detail) or 'refused'}). "
                "Check that the server is running and that base_url is right.",
                model=self.name,
            ) from None
        except TransportError as exc:
            raise ServerError(
                f"{self.name}: the connection to {url} failed mid-request "
                f"({exc.kind}: {_snippet(exc.detail) or 'no detail'}). "
                "The server may have crashed or restarted; check its logs.",
                model=self.name,
            ) from None
        if not 200 <= response.status < 300:
            self._raise_for_status(response, url)
        try:
            payload = response.json()
        except ValueError:
            raise ServerError(
                f"{self.name}: {url} answered with a body that is not JSON: "
                f"{_snippet(response.text)!r}. Check that base_url points at an "
                "OpenAI-compatible API (it usually ends in /v1).",
                model=self.name,
            ) from None
        try:
            return self._parse(payload, request, chat)
        except (KeyError, IndexError, TypeError, ValueError, ValidationError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ServerError(
                f"{self.name}: {url} answered in an unexpected shape ({detail}): "
                f"{_snippet(json.dumps(payload))!r}. Check that the server speaks the OpenAI "
                "API at base_url.",
                model=self.name,
            ) from None

    def _raise_for_status(self, response: HttpReply, url: str) -> NoReturn:
        status = response.status
        message = _server_message(response)
        where = f"{self.name}: HTTP {status} from {url}: {message}."
        error: ModelError
        if status == 429:
            retry_after = response.headers.get("Retry-After")
            wait = f" The server asks to retry after {retry_after}s." if retry_after else ""
            error = RateLimitError(
                f"{where}{wait} Lower the request rate or raise the account's rate limit.",
                model=self.name,
            )
        elif status == 408:
            error = ModelTimeoutError(
                f"{where} The server timed out the request; retry or raise its timeout.",
                model=self.name,
            )
        elif status >= 500 and _NO_LOGPROBS.search(message):
            error = PermanentModelError(
                f"{where} The server cannot return logprobs: pass supports_logprobs=False, "
                "or for llama_cpp.server restart it with --logits_all True.",
                model=self.name,
            )
        elif status >= 500:
            error = ServerError(
                f"{where} The server failed on its side; check its logs if this persists.",
                model=self.name,
            )
        elif status in (401, 403):
            sent = "the API key was rejected" if self._api_key else "no API key was sent"
            error = PermanentModelError(
                f"{where} Authentication failed: {sent}. Set the {self.api_key_env} "
                "environment variable or pass api_key=... to OpenAICompatibleModel.",
                model=self.name,
            )
        elif status == 404:
            error = ModelNotFoundError(
                f"{where} Either the model '{self.model}' is not served there or the endpoint "
                "does not exist: check model= and that base_url ends in /v1 "
                "(e.g. http://127.0.0.1:8000/v1).",
                model=self.name,
            )
        elif status in (400, 413, 422) and _OVERFLOW.search(response.text):
            window = (
                f" The model's context window is {self.context_window} tokens."
                if self.context_window
                else ""
            )
            error = ContextOverflowError(
                f"{where}{window} Shorten the question or its context passages, lower "
                "max_tokens, or route to a model with a longer context.",
                model=self.name,
            )
        elif 400 <= status < 500:
            error = PermanentModelError(
                f"{where} The server refused the request; check model '{self.model}' and "
                "the generation settings it supports (e.g. supports_logprobs=False if it "
                "rejects logprobs).",
                model=self.name,
            )
        else:
            error = PermanentModelError(
                f"{where} Unexpected status; check that base_url is the API's address "
                "(a redirect often means http:// should be https://).",
                model=self.name,
            )
        raise error

    def _parse(self, payload: Any, request: GenerationRequest, chat: bool) -> Generation:
        if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
            raise ValueError("no 'choices' list")
        choices: list[dict[str, Any]] = payload["choices"]
        if not choices:
            raise ValueError("'choices' is empty")
        choices = sorted(choices, key=lambda c: int(c.get("index") or 0))
        wants_logprobs = request.logprobs and self.supports_logprobs
        k = request.top_logprobs
        completions = []
        for choice in choices:
            text = (choice["message"].get("content") or "") if chat else choice["text"]
            if not isinstance(text, str):
                raise TypeError(f"completion text is {type(text).__name__}, not a string")
            tokens = None
            if wants_logprobs:
                parse = _chat_tokens if chat else _legacy_tokens
                tokens = parse(choice.get("logprobs"), k)
            completions.append(
                Completion(text=text, tokens=tokens, finish_reason=choice.get("finish_reason"))
            )
        usage = payload.get("usage") or {}
        reported = payload.get("model")
        return Generation(
            model=self.name,
            response_model=reported if isinstance(reported, str) and reported else None,
            completions=tuple(completions),
            usage=Usage(
                input_tokens=int(usage.get("prompt_tokens") or 0),
                output_tokens=int(usage.get("completion_tokens") or 0),
            ),
            response_id=payload.get("id"),
        )


def _chat_tokens(logprobs: Any, k: int) -> tuple[TokenLogprob, ...] | None:
    """Chat format: logprobs.content[j] = {token, logprob, top_logprobs: [{token, logprob}]}."""
    if not logprobs or logprobs.get("content") is None:
        return None
    return tuple(
        TokenLogprob(
            token=entry["token"],
            logprob=entry["logprob"],
            top=tuple(
                TokenAlternative(token=alt["token"], logprob=alt["logprob"])
                for alt in (entry.get("top_logprobs") or ())[:k]
            ),
        )
        for entry in logprobs["content"]
    )


def _legacy_tokens(logprobs: Any, k: int) -> tuple[TokenLogprob, ...] | None:
    """Completions format: {tokens: [...], token_logprobs: [...], top_logprobs: [{tok: lp}]}."""
    if not logprobs or logprobs.get("tokens") is None or logprobs.get("token_logprobs") is None:
        return None
    tops = logprobs.get("top_logprobs") or [None] * len(logprobs["tokens"])
    result = []
    for token, logprob, top in zip(
        logprobs["tokens"], logprobs["token_logprobs"], tops, strict=True
    ):
        ranked = sorted((top or {}).items(), key=lambda item: item[1], reverse=True)[:k]
        result.append(
            TokenLogprob(
                token=token,
                logprob=logprob,
                top=tuple(TokenAlternative(token=t, logprob=lp) for t, lp in ranked),
            )
        )
    return tuple(result)


__all__ = ["OpenAICompatibleModel"]
