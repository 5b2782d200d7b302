"""modelserver: an Open Inference Protocol (KServe V2) server for ONNX models.

It is the serving half of modelrollout: every rollout gate the operator checks (error rate, p99
latency, accuracy from ground-truth feedback) is computed from the Prometheus metrics this server
exports, and every readiness decision comes from its warmup-gated readiness probe.
"""

__version__ = "0.1.0"
