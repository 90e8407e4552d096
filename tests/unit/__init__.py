"""The fast tier: pure functions and classes, no process, server, kernel or network.

``python -m pytest tests/unit`` runs in seconds; the tests one level up start real processes.
"""
