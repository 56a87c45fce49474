python -m benchmarks cost --only scaling
