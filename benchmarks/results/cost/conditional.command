python -m benchmarks cost --only conditional,latency,experts
