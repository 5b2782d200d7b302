"""KServe's own SDK (kserve==0.21.0) as a client of our server: REST with JSON, REST with the binary
tensor extension (binary inputs and outputs), and gRPC, each giving the JSON path's predictions.

The SDK runs in its own venv (hack/client-venvs.sh, built by `make test`'s set-up) and process
(tests/server/kserve_client.py): it brings its own stack and its own generated gRPC module.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from examples.models import dataset
from hack.loopback.cluster import CACHE
from tests.server.conftest import ServerFactory, free_port, model_args
from tests.server.test_grpc import assert_same_outputs, http_outputs

KSERVE_PYTHON = CACHE / "client-venvs" / "kserve" / "bin" / "python"
CLIENT = Path(__file__).with_name("kserve_client.py")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, object]]:
    if not KSERVE_PYTHON.exists():
        pytest.fail(
            f"KServe's client venv is missing: run `make client-venvs` (hack/client-venvs.sh) for {KSERVE_PYTHON}"
        )
    factory = ServerFactory(tmp_path_factory.mktemp("kserve-client"))
    grpc_port = free_port()
    try:
        process = factory.start(model_args("baseline", "--warmup-requests", "2", "--grpc-port", str(grpc_port)))
        yield process.url, f"127.0.0.1:{grpc_port}", process
    finally:
        factory.stop_all()


@pytest.mark.parametrize("mode", ["rest-json", "rest-binary", "grpc"])
def test_kserves_client_gets_the_json_paths_predictions(server: tuple[str, str, object], mode: str) -> None:
    url, grpc_address, process = server
    features = np.asarray(dataset.generate(7, seed=21).features, dtype=np.float32)
    spec = {
        "model": "fraud",
        "id": f"kserve-{mode}",
        "inputs": [{"name": dataset.INPUT_NAME, "datatype": "FP32", "shape": list(features.shape),
                    "data": features.tolist()}],
        "outputs": ["label", "probabilities"],
    }  # fmt: skip
    done = subprocess.run(
        [str(KSERVE_PYTHON), str(CLIENT), mode, grpc_address if mode == "grpc" else url],
        input=json.dumps(spec), text=True, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert "error" not in answer, answer
    assert answer["id"] == f"kserve-{mode}"
    assert_same_outputs(answer["outputs"], http_outputs(process, features))  # type: ignore[arg-type]
