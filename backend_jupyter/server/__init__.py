"""The embedded Backend.AI-compatible API server (``backend-jupyter server``).

It stands apart from the rest of the package: it imports only the shared signing and
configuration helpers, never kernel or magics code.
"""
