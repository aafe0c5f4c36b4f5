"""The platform: clusters (backends) and overlays (SEC, NET), driven by Kubernetes objects.

Knows nothing of pytest, and starts the workload only by command line (never imports fl_app).
"""
