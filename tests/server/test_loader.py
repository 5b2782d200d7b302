"""Model fetching: file and http(s) URIs, retries with backoff, size limits, sha256, metadata parsing."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelserver.errors import LoadError
from modelserver.loader import (
    FetchPolicy,
    NotFoundError,
    backoff_delay,
    fetch,
    hub_url,
    normalise_uri,
    sibling_uri,
    verify_sha256,
)
from modelserver.metadata import parse_metadata

from .conftest import MODELS


class _Handler(http.server.BaseHTTPRequestHandler):
    failures_left: dict[str, int]
    hits: dict[str, int]
    files: dict[str, bytes]

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.failures_left.get(self.path, 0) > 0:
            self.failures_left[self.path] -= 1
            self.send_response(503)
            self.end_headers()
            return
        if self.path == "/forbidden":
            self.send_response(403)
            self.end_headers()
            return
        data = self.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_files() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"failures_left": {}, "hits": {}, "files": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


FAST = FetchPolicy(max_bytes=10_000_000, timeout=5, retries=3, backoff_base=0.001)


def test_file_uri_and_plain_path() -> None:
    data = (MODELS / "baseline.onnx").read_bytes()
    assert fetch(str(MODELS / "baseline.onnx"), FAST) == data
    assert fetch((MODELS / "baseline.onnx").as_uri(), FAST) == data
    with pytest.raises(NotFoundError):
        fetch(str(MODELS / "nope.onnx"), FAST)


def test_file_size_limit() -> None:
    with pytest.raises(LoadError, match="above the limit"):
        fetch(str(MODELS / "better.onnx"), FetchPolicy(max_bytes=100))


def test_unsupported_scheme() -> None:
    with pytest.raises(LoadError, match="unsupported"):
        normalise_uri("ftp://bucket/model.onnx")


def test_http_retries_transient_errors(http_files: tuple[str, type[_Handler]]) -> None:
    base, handler = http_files
    handler.files["/m.onnx"] = b"onnx-bytes"
    handler.failures_left["/m.onnx"] = 2
    assert fetch(f"{base}/m.onnx", FAST) == b"onnx-bytes"
    assert handler.hits["/m.onnx"] == 3


def test_http_gives_up_after_retry_budget(http_files: tuple[str, type[_Handler]]) -> None:
    base, handler = http_files
    handler.files["/m.onnx"] = b"x"
    handler.failures_left["/m.onnx"] = 10
    with pytest.raises(LoadError, match="after 4 attempts"):
        fetch(f"{base}/m.onnx", FAST)
    assert handler.hits["/m.onnx"] == 4


def test_http_permanent_errors_are_not_retried(http_files: tuple[str, type[_Handler]]) -> None:
    base, handler = http_files
    with pytest.raises(NotFoundError):
        fetch(f"{base}/missing.onnx", FAST)
    with pytest.raises(LoadError, match="403"):
        fetch(f"{base}/forbidden", FAST)
    assert handler.hits["/missing.onnx"] == 1 and handler.hits["/forbidden"] == 1


def test_http_size_limit(http_files: tuple[str, type[_Handler]]) -> None:
    base, handler = http_files
    handler.files["/big"] = b"x" * 5000
    with pytest.raises(LoadError, match="limit"):
        fetch(f"{base}/big", FetchPolicy(max_bytes=1000, retries=0))


def test_connection_refused_is_retried_then_fails() -> None:
    from .conftest import free_port

    with pytest.raises(LoadError, match="after 2 attempts"):
        fetch(f"http://127.0.0.1:{free_port()}/m.onnx", FetchPolicy(1000, timeout=1, retries=1, backoff_base=0.001))


def test_backoff_is_exponential_with_full_jitter() -> None:
    assert backoff_delay(3, 0.5, rng=lambda: 1.0) == 4.0
    assert backoff_delay(3, 0.5, rng=lambda: 0.0) == 0.0
    assert backoff_delay(30, 0.5, rng=lambda: 1.0) == 10.0


def test_sha256_verification() -> None:
    digest = verify_sha256(b"abc", None, "x")
    assert verify_sha256(b"abc", digest.upper(), "x") == digest
    with pytest.raises(LoadError, match="sha256 mismatch"):
        verify_sha256(b"abd", digest, "x")


def test_sibling_uri() -> None:
    assert sibling_uri("https://h/models/a/model.onnx?x=1", "metadata.json") == "https://h/models/a/metadata.json"
    assert sibling_uri("/tmp/m/model.onnx", "metadata.json") == Path("/tmp/m/metadata.json").as_uri()


def test_example_metadata_parses() -> None:
    meta = parse_metadata((MODELS / "metadata.json").read_bytes())
    assert meta.feature_names[-1] == "channel" and meta.positive_class == "fraud"
    assert meta.features[-1].impute_value in meta.features[-1].categories


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b"[]", "JSON object"),
        (b"{", "invalid JSON"),
        (b'{"features": [{"name": "a", "type": "text"}]}', "type"),
        (b'{"features": [{"name": "a", "type": "category"}]}', "categories"),
        (b'{"features": [{"name": "a", "type": "number", "impute": {"strategy": "mean"}}]}', "value"),
        (b'{"features": [{"name": "a", "type": "category", "categories": ["x"], '
         b'"impute": {"strategy": "constant", "value": "y"}}]}', "not one of"),
        (b'{"classes": ["a"], "positive_class": "b"}', "positive_class"),
        (b'{"features": [{"name": "a", "type": "number"}, {"name": "a", "type": "number"}]}', "unique"),
    ],
)  # fmt: skip
def test_bad_metadata_is_a_load_error(doc: bytes, message: str) -> None:
    with pytest.raises(LoadError, match=message):
        parse_metadata(doc)


def test_hub_uris_map_to_the_hubs_resolve_urls() -> None:
    assert (
        hub_url("hf://acme/fraud-onnx/model.onnx") == "https://huggingface.co/acme/fraud-onnx/resolve/main/model.onnx"
    )
    assert (
        hub_url("hf://acme/fraud-onnx@v1.2/onnx/model.onnx", "http://mirror:8080/")
        == "http://mirror:8080/acme/fraud-onnx/resolve/v1.2/onnx/model.onnx"
    )
    for bad in ("hf://acme", "hf://acme/repo", "hf://acme/repo/dir/"):
        with pytest.raises(LoadError, match="is not hf://"):
            hub_url(bad)
