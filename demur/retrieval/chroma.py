"""Retrieval from chromadb: one collection per embedding model, searched by cosine similarity.

`ChromaStore` opens an embedded store on disk (or a chroma server), `ChromaStore.retriever`
gives a `ChromaRetriever` for one embedder, and `demur index` (or `demur.retrieval.index_paths`)
fills the collections. Importing this module imports chromadb; `demur.retrieval` does not.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from demur.adapters.embeddings import Embedder
from demur.adapters.embeddings.catalog import BUILTIN_EMBEDDERS
from demur.bases import RetrieverBase
from demur.embedders import shared_embedder
from demur.errors import (
    ConfigError,
    EmptyCollectionError,
    MissingDependencyError,
    RetrievalError,
)
from demur.retrieval.sync import BOOKKEEPING
from demur.types import Document

try:
    import chromadb
    from chromadb.api.types import (
        Documents,
        Embeddable,
        EmbeddingFunction,
        Embeddings,
        normalize_embeddings,
        validate_embeddings,
    )
    from chromadb.errors import NotFoundError
    from chromadb.utils.embedding_functions import register_embedding_function
except ModuleNotFoundError as exc:  # pragma: no cover - exercised only without the extra
    if exc.name != "chromadb":
        raise
    raise MissingDependencyError("chromadb", "chroma", "The chroma retriever") from None

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

DEFAULT_PATH = ".demur/chroma"
DEFAULT_PORT = {"http": 8000, "https": 443}
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{1,510}[A-Za-z0-9])?")
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class DemurEmbeddingFunction(EmbeddingFunction[Documents]):
    """chromadb's view of a demur `Embedder`: passages through `__call__`, queries `embed_query`.

    Chroma stores `name()` and `get_config()` with each collection and rebuilds the function
    from them whenever it reads the collection's configuration, so it never falls back to its
    default model (which downloads weights). A function built from a name resolves the
    built-in embedder on first use: reading a collection loads no model.
    """

    def __init__(self, embedder: Embedder | str) -> None:
        self._embedder = None if isinstance(embedder, str) else embedder
        self.embedder_name: str = embedder if isinstance(embedder, str) else embedder.name
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        """The demur embedder; a name is resolved with `shared_embedder` on first use."""
        with self._lock:
            if self._embedder is None:
                self._embedder = shared_embedder(self.embedder_name)
            return self._embedder

    def __call__(self, input: Documents) -> Embeddings:
        """Embed documents to store, as passages."""
        return self._embed(input, "passage")

    def embed_query(self, input: Documents) -> Embeddings:
        """Embed search queries, as queries (E5 prefixes them differently from passages)."""
        # chroma validates what __call__ returns but not what embed_query returns.
        return validate_embeddings(normalize_embeddings(self._embed(input, "query")) or [])

    def _embed(self, input: Documents, kind: str) -> Embeddings:
        return list(self.embedder.embed(list(input), kind=kind))

    @staticmethod
    def name() -> str:
        return "demur"

    def default_space(self) -> Any:
        return "cosine"

    def supported_spaces(self) -> Any:
        return ["cosine", "ip", "l2"]

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> DemurEmbeddingFunction:
        DemurEmbeddingFunction.validate_config(config)
        return DemurEmbeddingFunction(str(config["embedder"]))

    def get_config(self) -> dict[str, Any]:
        return {"embedder": self.embedder_name}

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        if not isinstance(config.get("embedder"), str):
            raise ValueError(
                f"a demur embedding function config needs the embedder's name under "
                f"'embedder', got {config!r}"
            )

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        if old_config.get("embedder") != new_config.get("embedder"):
            raise ValueError(
                f"this collection holds vectors of the embedder '{old_config.get('embedder')}'; "
                f"it cannot switch to '{new_config.get('embedder')}'"
            )

    def __repr__(self) -> str:
        return f"DemurEmbeddingFunction({self.embedder_name!r})"


# Chroma looks functions up by name when it reads a collection's configuration.
register_embedding_function(DemurEmbeddingFunction)  # type: ignore[no-untyped-call]


def _parse_url(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in DEFAULT_PORT
        or not parts.hostname
        or port == -1
        or parts.path not in ("", "/")
    ):
        raise ConfigError(
            f"url must look like http://host:port (a chroma server started with "
            f"`chroma run --path DIR --port PORT`), got {url!r}"
        )
    return parts.hostname, port or DEFAULT_PORT[parts.scheme], parts.scheme == "https"


class ChromaStore:
    """A chromadb store holding one collection per embedding model, named `{prefix}-{model}`.

    By default an embedded store persisted at `path`; with `url` ("http://host:port") a chroma
    server instead. Nothing connects until first use. Collections use cosine distance, and
    vectors come from demur's embedders through `DemurEmbeddingFunction`, never chroma's
    default model.
    """

    def __init__(
        self,
        path: str | Path = DEFAULT_PATH,
        *,
        url: str | None = None,
        prefix: str = "demur",
    ) -> None:
        if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", prefix):
            raise ConfigError(
                f"prefix must start with a letter or digit and hold only letters, digits, "
                f"'.', '_' and '-' (chroma's rule for collection names), got {prefix!r}"
            )
        self.path = Path(path)
        # chroma shares one client per folder name in a process: make the name absolute now.
        self._folder = self.path.resolve()
        self.url = url
        self.prefix = prefix
        self._server = _parse_url(url) if url is not None else None
        self._client: ClientAPI | None = None
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        """Where the collections live: the server's url or the folder."""
        return self.url if self.url is not None else str(self.path)

    @property
    def client(self) -> ClientAPI:
        """The chromadb client, created on first use (telemetry off)."""
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> ClientAPI:
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        try:
            if self._server is None:
                return chromadb.PersistentClient(path=self._folder, settings=settings)
            host, port, ssl = self._server
            return chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=settings)
        except Exception as exc:
            hint = (
                f"; start one with `chroma run --path DIR --port {self._server[1]}`"
                if self._server is not None
                else ""
            )
            raise RetrievalError(
                f"could not open the chroma store at {self.location}: "
                f"{type(exc).__name__}: {exc}{hint}"
            ) from exc

    def collection_name(self, embedder_name: str) -> str:
        """The collection that holds `embedder_name`'s vectors, e.g. "demur-minilm-l6".

        Characters chroma does not allow in names become "-".
        """
        name = f"{self.prefix}-{_NOT_IN_NAME.sub('-', embedder_name)}".rstrip("._-")
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"cannot name a chroma collection after the embedder {embedder_name!r} "
                f"(got {name!r}; chroma wants 3-512 letters, digits, '.', '_' or '-')"
            )
        return name

    def index_hint(self, embedder_name: str) -> str:
        """The `demur index` command that fills `embedder_name`'s collection in this store."""
        where = f" --url {self.url}" if self.url is not None else ""
        if self.url is None and self.path != Path(DEFAULT_PATH):
            where = f" --store {self.path}"
        return f"demur index PATH --embedders {embedder_name}{where}"

    @property
    def exists(self) -> bool:
        """False for a store folder that does not exist (yet); a server is assumed to exist."""
        return self.url is not None or self._folder.is_dir()

    def collection(self, embedder: Embedder | str, *, create: bool = False) -> Collection:
        """The chromadb collection of `embedder` (a name or an Embedder), created if `create`.

        Only `create` creates the store's folder. Raises RetrievalError naming the collection
        and the fix when it does not exist, and when chroma fails.
        """
        embedder_name = embedder if isinstance(embedder, str) else embedder.name
        name = self.collection_name(embedder_name)
        if not create and not self.exists:
            raise RetrievalError(
                f"the chroma collection '{name}' does not exist in {self.location}: there is "
                f"no store there (no such folder; check the path). Index your documents "
                f"first: {self.index_hint(embedder_name)}"
            )
        # chroma's client is typed for functions of any input; this one takes documents only.
        function = cast("EmbeddingFunction[Embeddable]", DemurEmbeddingFunction(embedder))
        client = self.client
        try:
            if create:
                return client.get_or_create_collection(
                    name,
                    embedding_function=function,
                    configuration={"hnsw": {"space": "cosine"}},
                    metadata={"embedder": embedder_name},
                )
            return client.get_collection(name, embedding_function=function)
        except NotFoundError:
            raise RetrievalError(
                f"the chroma collection '{name}' does not exist in {self.location}: nothing "
                f"was indexed with the embedder '{embedder_name}' there yet. Index your "
                f"documents first: {self.index_hint(embedder_name)}"
            ) from None
        except Exception as exc:
            raise RetrievalError(
                f"could not open the chroma collection '{name}' in {self.location}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def check_indexed(self, embedder_name: str) -> int:
        """How many chunks `embedder_name`'s collection holds, refusing none.

        Raises RetrievalError when the store or the collection does not exist, and
        EmptyCollectionError when it is empty, each naming the `demur index` command that
        fills it. Creates nothing and loads no model.
        """
        name = self.collection_name(embedder_name)
        try:
            count = self.collection(embedder_name).count()
        except RetrievalError:
            raise
        except Exception as exc:
            raise RetrievalError(
                f"could not count the chroma collection '{name}' in {self.location}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if count == 0:
            raise EmptyCollectionError(
                f"the chroma collection '{name}' in {self.location} is empty. Index your "
                f"documents first: {self.index_hint(embedder_name)}"
            )
        return count

    def retriever(
        self, embedder: Embedder | str, *, cutoff: float | None = None
    ) -> ChromaRetriever:
        """A retriever over `embedder`'s collection; a name is resolved with `shared_embedder`."""
        resolved = shared_embedder(embedder) if isinstance(embedder, str) else embedder
        return ChromaRetriever(self, resolved, cutoff=cutoff)

    def count(self, embedder_name: str) -> int:
        """How many chunks `embedder_name`'s collection holds; 0 when it does not exist."""
        name = self.collection_name(embedder_name)
        if not self.exists:
            return 0
        try:
            return self.client.get_collection(name, embedding_function=None).count()
        except NotFoundError:
            return 0
        except Exception as exc:
            raise RetrievalError(
                f"could not count the chroma collection '{name}' in {self.location}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def delete(self, embedder_name: str) -> None:
        """Delete `embedder_name`'s collection and its vectors; nothing happens if it is absent."""
        name = self.collection_name(embedder_name)
        if not self.exists:
            return
        try:
            self.client.delete_collection(name)
        except NotFoundError:
            return
        except Exception as exc:
            raise RetrievalError(
                f"could not delete the chroma collection '{name}' in {self.location}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def __repr__(self) -> str:
        where = f"url={self.url!r}" if self.url is not None else f"path={str(self.path)!r}"
        return f"ChromaStore({where}, prefix={self.prefix!r})"


def _space(collection: Collection) -> str:
    configuration: Mapping[str, Any] = collection.configuration_json or {}
    index = configuration.get("hnsw") or configuration.get("spann") or {}
    space = index.get("space") if isinstance(index, Mapping) else None
    return space if isinstance(space, str) else "l2"


def _similarity(distance: float, space: str) -> float:
    """Cosine similarity from a chroma distance, for unit vectors (demur's embedders' rows)."""
    # cosine and ip: d = 1 - cos; l2 (squared): d = 2 - 2 cos.
    similarity = 1.0 - distance / 2.0 if space == "l2" else 1.0 - distance
    return min(1.0, max(-1.0, similarity))


class ChromaRetriever(RetrieverBase):
    """Finds the passages most similar to a query in one embedder's chroma collection.

    `name` is the embedder's name. Each Document's `score` is the cosine similarity (1 - the
    cosine distance, in [-1, 1]), `source` and `metadata` come from what was indexed. `cutoff`
    is a fitted similarity cutoff (see `demur.ConformalCutoff`) that `RetrieveMore(cutoff=True)`
    applies; the retriever itself drops nothing.
    """

    def __init__(self, store: ChromaStore, embedder: Embedder, *, cutoff: float | None = None):
        self.store = store
        self.embedder = embedder
        self.name: str = embedder.name
        self.cutoff = cutoff
        builtin = BUILTIN_EMBEDDERS.get(embedder.name)
        self.languages = builtin.languages if builtin is not None else None
        self.collection_name = store.collection_name(embedder.name)
        self._function = DemurEmbeddingFunction(embedder)

    async def aretrieve(self, query: str, k: int) -> tuple[Document, ...]:
        """The `k` passages most similar to `query`, most similar first (run in a thread)."""
        _check_k(k)
        return await asyncio.to_thread(self.retrieve, query, k)

    def retrieve(self, query: str, k: int) -> tuple[Document, ...]:
        """The `k` passages most similar to `query`, most similar first; fewer if fewer exist."""
        _check_k(k)
        if not isinstance(query, str):
            raise ConfigError(f"query must be a str, got {type(query).__name__}")
        collection = self.store.collection(self.embedder)
        try:
            vectors = self._function.embed_query([query])
        except ConfigError:
            raise
        except Exception as exc:
            raise RetrievalError(
                f"could not embed the query with '{self.name}': {type(exc).__name__}: {exc}"
            ) from exc
        try:
            result = collection.query(
                query_embeddings=vectors,
                n_results=k,
                include=["documents", "metadatas", "distances"],
            )
            empty = not result["ids"] or not result["ids"][0]
            if empty and collection.count() == 0:
                raise EmptyCollectionError(
                    f"the chroma collection '{self.collection_name}' in "
                    f"{self.store.location} is empty. Index your documents first: "
                    f"{self.store.index_hint(self.name)}"
                )
        except RetrievalError:
            raise
        except Exception as exc:
            raise RetrievalError(
                f"could not query the chroma collection '{self.collection_name}' in "
                f"{self.store.location}: {type(exc).__name__}: {exc}"
            ) from exc
        return self._documents(result, _space(collection))

    def _documents(self, result: Any, space: str) -> tuple[Document, ...]:
        ids: list[str] = result["ids"][0] if result["ids"] else []
        texts = (result.get("documents") or [[]])[0] or [None] * len(ids)
        metadatas = (result.get("metadatas") or [[]])[0] or [None] * len(ids)
        distances = (result.get("distances") or [[]])[0] or [None] * len(ids)
        documents = []
        for id_, text, metadata, distance in zip(ids, texts, metadatas, distances, strict=True):
            # What indexing records to stay in sync (document keys, hashes) is not the caller's.
            meta = {k: v for k, v in (metadata or {}).items() if k not in BOOKKEEPING}
            source = meta.get("source")
            documents.append(
                Document(
                    id=id_,
                    text=text or "",
                    score=None if distance is None else _similarity(float(distance), space),
                    source=source if isinstance(source, str) else None,
                    retriever=self.name,
                    metadata=meta,
                )
            )
        documents.sort(key=lambda document: -(document.score or 0.0))
        return tuple(documents)

    def __repr__(self) -> str:
        return (
            f"ChromaRetriever({self.name!r}, collection={self.collection_name!r}, "
            f"store={self.store.location!r}, cutoff={self.cutoff!r})"
        )


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k (how many passages to retrieve) must be an integer >= 1, got {k!r}")
