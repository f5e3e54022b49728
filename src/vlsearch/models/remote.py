"""The Embedder and Reranker interfaces over HTTP.

``RemoteEmbedder`` talks to any OpenAI-compatible ``/v1/embeddings`` endpoint (this
project's server, vLLM, others); ``RemoteReranker`` to a Cohere/Jina-compatible
``/v1/rerank``. ``api`` picks the request shape: ``"vlsearch"`` (this project's server:
content parts and an ``instruction`` field), ``"vllm"`` (vLLM's chat-style embedding
requests and ``{"content": parts}`` rerank documents, see docs/vllm.md), ``"openai"`` (plain
text only) or ``"auto"`` (asks ``/v1/models``). Media are read and checked here, with the same limits as the local
models, and sent inline as data URIs with their original bytes, so the server decodes
exactly the pixels a local model would.

The server is one the user configured (often on the same machine), so these clients do
not apply the private-address guard that protects URL *inputs* (``media/fetch.py``).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any, Literal

import numpy as np

from ..errors import (CollectionNotFound, Forbidden, InputError, ModelError, ServerUnreachable, StoreError,
                      VlsearchError, each_item, in_context)
from ..items import Item, split_videos
from ..media.images import MediaLimits
from ..wire import content_parts, is_text
from .contract import EmbedderBase, RerankerBase
from .embedder import DEFAULT_INSTRUCTION as EMBED_INSTRUCTION
from .qwen3vl import normalise_instruction
from .reranker import DEFAULT_INSTRUCTION as RERANK_INSTRUCTION


Api = Literal["auto", "vlsearch", "vllm", "openai"]
APIS = ("auto", "vlsearch", "vllm", "openai")


class ApiClient:
    """JSON over a vlsearch (or OpenAI/Cohere-compatible) server's ``/v1`` API with an optional bearer key;
    errors become vlsearch errors (400/413/422: ``InputError``; 404 of a collection: ``CollectionNotFound``;
    409: ``StoreError``; else ``ModelError``)."""

    def __init__(self, url: str, api_key: str | None, timeout: float) -> None:
        if not url.startswith(("http://", "https://")):
            raise InputError(f"{url}: a remote model URL must start with http:// or https://")
        base = url.rstrip("/")
        self.base = base if base.endswith("/v1") else base + "/v1"
        self.api_key, self.timeout = api_key, timeout
        self._models: list[dict[str, Any]] | None = None

    def models(self) -> list[dict[str, Any]]:
        """``GET /v1/models``, fetched once."""
        if self._models is None:
            self._models = list(self.call("models").get("data", []))
        return self._models

    def resolve(self, api: str) -> str:
        """The request shape: ``api`` itself, or for "auto" the one the server's model list implies."""
        if api not in APIS:
            raise InputError(f"api must be one of {', '.join(APIS)}, not {api!r}")
        if api != "auto":
            return api
        models = self.models()
        if any(m.get("fingerprint") for m in models):
            return "vlsearch"
        if any(m.get("owned_by") == "vllm" for m in models):
            return "vllm"
        return "openai"

    def call(self, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.base}/{route}"
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers=headers, method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            message, code = _error_message(exc.read())
            kind = (InputError if exc.code in (400, 413, 422) else CollectionNotFound if code == "collection_not_found"
                    else StoreError if exc.code == 409 else Forbidden if exc.code == 403 else ModelError)
            hint = " (give the server's key in $VLSEARCH_API_KEY)" if exc.code == 401 else ""
            raise kind(f"{url}: HTTP {exc.code}: {message}{hint}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ServerUnreachable(f"{url}: cannot reach the model server ({getattr(exc, 'reason', exc)})") from None
        except json.JSONDecodeError:
            raise ModelError(f"{url}: the answer is not JSON") from None


def _error_message(raw: bytes) -> tuple[str, str | None]:
    """The message and the code of an error answer."""
    try:
        body = json.loads(raw)
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message", error))[:500], error.get("code")
        return str(error)[:500], None
    except (ValueError, AttributeError):
        return raw[:200].decode(errors="replace"), None


def _check_vllm(item: Item) -> None:
    """Refuse what vLLM's request shape cannot carry (rather than drop it silently)."""
    if any(isinstance(v, list) for v in split_videos(item.video)):
        raise InputError("a video given as frames cannot be sent to vLLM: give a video file")
    if item.video is not None and (item.fps or item.max_frames):
        raise InputError("vLLM samples video frames with the server's settings: fps and max_frames "
                         "cannot be set per item (see docs/vllm.md)")


def _plain_text(parts: list[dict[str, Any]]) -> str:
    if not is_text(parts):
        raise InputError("this server speaks plain OpenAI (text only): images and videos need "
                         "api='vlsearch' or api='vllm'")
    return parts[0]["text"]


class RemoteEmbedder(EmbedderBase):
    """``Embedder`` over HTTP: the same ``embed`` call, vectors computed by a model server.

    Args:
        url: the server, e.g. "http://127.0.0.1:8000" (``/v1`` is added when missing).
        model: model name sent with each request (the server's default when None).
        api_key: sent as ``Authorization: Bearer``.
        instruction: default instruction for items without one (None: the server's default).
        batch_size: items per request (the server batches requests together again).
        limits: caps on media, checked before anything is sent.
        api: request shape: "vlsearch", "vllm" (one chat-style request per item: the instruction
            as the system message, the item as the user message), "openai" (plain text, no
            instruction) or "auto" (vlsearch when ``/v1/models`` reports a fingerprint, vllm when
            it reports ``owned_by: vllm``, else openai).
        prompts, default_prompt_name, similarity_fn_name, truncate_dim: ``SentenceTransformer``'s.

    Example:
        >>> emb = RemoteEmbedder("http://127.0.0.1:8000")
        >>> emb.embed(["a dog on a beach", {"image": "dog.jpg"}]).shape
        (2, 2048)
    """

    def __init__(self, url: str, *, model: str | None = None, api_key: str | None = None,
                 instruction: str | None = None, timeout: float = 300.0, batch_size: int = 32,
                 limits: MediaLimits | None = None, api: Api = "auto", prompts: dict[str, str | None] | None = None,
                 default_prompt_name: str | None = None, similarity_fn_name: str | None = None,
                 truncate_dim: int | None = None) -> None:
        self.sentence_transformers_options(prompts, default_prompt_name, similarity_fn_name, truncate_dim)
        self.client = ApiClient(url, api_key, timeout)
        self.model_id, self.instruction, self.batch_size = model, instruction, batch_size
        self.limits = limits or MediaLimits()
        self._info: dict[str, Any] | None = None
        self._api: str = api
        if api not in APIS:
            self.client.resolve(api)  # raises the InputError

    @property
    def api(self) -> str:
        """The request shape in use ("auto" resolved on first use)."""
        if self._api == "auto":
            self._api = self.client.resolve("auto")
        return self._api

    @property
    def info(self) -> dict[str, Any]:
        """The server's description of the model (``GET /v1/models``), fetched once."""
        if self._info is None:
            models = self.client.models()
            chosen = [m for m in models if m.get("id") == self.model_id] or \
                [m for m in models if m.get("type", "embedding") == "embedding"]
            self._info = chosen[0] if chosen else {}
        return self._info

    @property
    def dim(self) -> int:
        """The full embedding dimension (asked of the server, else measured on a probe)."""
        known = self.info.get("dim") or self.info.get("dimensions")
        return int(known) if known else int(self.embed(["dimension probe"]).shape[1])

    @property
    def fingerprint(self) -> str:
        """The weights' fingerprint when the server tells it, else the URL and model name."""
        return str(self.info.get("fingerprint") or f"remote:{self.client.base}:{self.model_id or ''}")

    def _unit_vectors(self, items: list[Item], instruction: str | None, progress: bool | None) -> np.ndarray:
        """Every item checked before anything is sent; requests of ``batch_size`` items per instruction."""
        api = self.api

        def prepare(item: Item) -> tuple[str | None, Any]:
            """(instruction, payload) of one item."""
            key = normalise_instruction(item.instruction or instruction) or self.instruction
            parts = content_parts(item, self.limits)
            if api == "vllm":
                _check_vllm(item)
            elif api == "openai":
                parts = [{"type": "text", "text": _plain_text(parts)}]
                if key:
                    raise InputError("a plain OpenAI embeddings server takes no instruction")
            return key, parts[0]["text"] if is_text(parts) and api != "vllm" else parts

        requests: dict[str | None, list[tuple[int, Any]]] = {}
        for index, (key, payload) in enumerate(each_item(items, prepare)):
            requests.setdefault(key, []).append((index, payload))
        rows: list[np.ndarray | None] = [None] * len(items)
        for key, entries in requests.items():
            if api == "vllm":
                for index, parts in entries:
                    rows[index] = self._embed_vllm(parts, key)
                continue
            for start in range(0, len(entries), self.batch_size):
                chunk = entries[start:start + self.batch_size]
                body = {"input": [payload for _, payload in chunk], "encoding_format": "base64",
                        **({"model": self.model_id} if self.model_id else {}),
                        **({"instruction": key} if key else {})}
                answer = self.client.call("embeddings", body)
                for entry in sorted(answer.get("data", []), key=lambda e: e["index"]):
                    rows[chunk[entry["index"]][0]] = _vector(entry["embedding"])
        if any(row is None for row in rows):
            raise ModelError(f"{self.client.base}: the server returned fewer embeddings than inputs")
        vectors = np.stack(rows)
        if api == "vlsearch":  # the library's own unit rows, bit for bit: re-normalising would round them again
            return vectors
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def _embed_vllm(self, parts: list[dict[str, Any]], instruction: str | None) -> np.ndarray:
        """One item through vLLM's chat-style embeddings: system = instruction, user = the item,
        then an open assistant turn, so the last token is the one the model pools (docs/vllm.md)."""
        messages = [{"role": "system", "content": [{"type": "text", "text": instruction or EMBED_INSTRUCTION}]},
                    {"role": "user", "content": parts},
                    {"role": "assistant", "content": [{"type": "text", "text": ""}]}]
        body = {"messages": messages, "encoding_format": "float", "continue_final_message": True,
                "add_special_tokens": True, **({"model": self.model_id} if self.model_id else {})}
        data = self.client.call("embeddings", body).get("data", [])
        if len(data) != 1:
            raise ModelError(f"{self.client.base}: {len(data)} embeddings for one input")
        return _vector(data[0]["embedding"])


def _vector(embedding: Any) -> np.ndarray:
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4").astype(np.float32)
    return np.asarray(embedding, dtype=np.float32)


class RemoteReranker(RerankerBase):
    """``Reranker`` over HTTP (Cohere/Jina ``/v1/rerank``): the same ``score`` and ``rank``.

    Example:
        >>> RemoteReranker("http://127.0.0.1:8000").score("capital of France", ["Paris", "Rome"])
        [0.97, 0.02]
    """

    def __init__(self, url: str, *, model: str | None = None, api_key: str | None = None,
                 timeout: float = 300.0, batch_size: int = 64, limits: MediaLimits | None = None,
                 api: Api = "auto", prompts: dict[str, str | None] | None = None,
                 default_prompt_name: str | None = None) -> None:
        self.sentence_transformers_options(prompts, default_prompt_name)
        self.client = ApiClient(url, api_key, timeout)
        self.model_id, self.batch_size = model, batch_size
        self.limits = limits or MediaLimits()
        self._api: str = api
        if api not in APIS:
            self.client.resolve(api)  # raises the InputError

    @property
    def api(self) -> str:
        """The request shape in use: "vlsearch", "vllm" (``{"content": parts}`` for media), "openai"
        (plain Cohere-style text), or "auto" resolved from ``/v1/models`` on first use."""
        if self._api == "auto":
            self._api = self.client.resolve("auto")
        return self._api

    def _document(self, item: Item) -> Any:
        parts = content_parts(item, self.limits)
        if is_text(parts):
            return parts[0]["text"]
        if self.api == "vllm":
            _check_vllm(item)
            return {"content": parts}
        if self.api == "openai":
            return _plain_text(parts)
        texts = [p["text"] for p in parts if p["type"] == "text"]
        images = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
        if len(images) > 1 or len(parts) != len(texts) + len(images):
            return {"content": parts}
        return {**({"text": " ".join(texts)} if texts else {}), **({"image": images[0]} if images else {})}

    def _scores(self, query: Item, documents: list[Item], instruction: str | None, **_: Any) -> list[float]:
        """One request per ``batch_size`` documents; scores in the documents' order."""
        try:
            q = self._document(query)
        except VlsearchError as exc:
            raise in_context("query", exc) from None
        if self.api in ("vllm", "openai") and instruction and instruction.strip() != RERANK_INSTRUCTION:
            raise InputError(f"{self.client.base}: this rerank API takes no per-request instruction; for vLLM "
                             "put it in the served chat template (docs/vllm.md)")
        payload = each_item(documents, self._document)
        scores: list[float] = []
        for start in range(0, len(payload), self.batch_size):
            chunk = payload[start:start + self.batch_size]
            body = {"query": q, "documents": chunk, "top_n": len(chunk),
                    **({"return_documents": False} if self.api != "vllm" else {}),
                    **({"model": self.model_id} if self.model_id else {}),
                    **({"instruction": instruction} if instruction and self.api == "vlsearch" else {})}
            results = self.client.call("rerank", body).get("results", [])
            by_index = {r["index"]: float(r["relevance_score"]) for r in results}
            if len(by_index) != len(chunk):
                raise ModelError(f"{self.client.base}: {len(by_index)} scores for {len(chunk)} documents")
            scores += [by_index[i] for i in range(len(chunk))]
        return scores
