"""``make bench-drift``: the continuous watch's drift gate on simulated traffic (hack/bench_drift.py)."""
