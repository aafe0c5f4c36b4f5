"""The federated learning workload under test: PyTorch FedAvg over gRPC with a JSONL event log.

Knows nothing of Kubernetes or pytest; the platform starts it by command line.
"""
