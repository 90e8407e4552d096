"""Run inside an SDK venv: signs each vector from stdin (JSON list) with the SDK's own
generate_signature and prints the signatures (JSON list).  Python 3.7+."""

import inspect
import json
import sys
from datetime import datetime

from ai.backend.client.auth import generate_signature
from yarl import URL

params = inspect.signature(generate_signature).parameters
out = []
for v in json.load(sys.stdin):
    kw = dict(method=v["method"], version=v["version"], endpoint=URL(v["endpoint"]),
              date=datetime.fromisoformat(v["date"]), content_type=v["content_type"],
              access_key=v["access_key"], secret_key=v["secret_key"], hash_type=v["hash_type"])
    kw["rel_url"] = v["rel_url"]
    if "content" in params:
        kw["content"] = v["body"].encode()
    headers, signature = generate_signature(**kw)
    out.append(signature)
print(json.dumps(out))
