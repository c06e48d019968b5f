"""Kubernetes deployment: Helm values, manifests, their renderer (render.py) and the Dockerfile."""
