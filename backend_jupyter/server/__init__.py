"""The embedded Backend.AI-compatible API server (``backend-jupyter server``).

It stands apart from the rest of the package: it imports only the shared helpers (signing.py,
fastjson.py, protocol.py for the wire vocabulary, config.py for a session's base environment),
never client, kernel or magics code.

Modules, from the application down: app (assembly and lifecycle), middleware, routes/ (one module
per REST resource), then the things they serve: sessions (a local kernel per session), runs, batch,
images, vfolders, files, keys, auth; and at the bottom records, params and errors.
"""
