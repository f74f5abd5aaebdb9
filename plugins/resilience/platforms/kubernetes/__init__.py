"""The Kubernetes/AWS platform: each capability through the providers' hooks and an environment's Connections.

``target`` reads what ``environments.yaml`` says about the cluster; one module per capability
(``workloads``: the app's pods and its Deployment) turns the platform's intents into API calls.
"""
