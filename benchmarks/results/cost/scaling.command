python -m benchmarks cost --only scaling --sizes 10000,100000,1000000
