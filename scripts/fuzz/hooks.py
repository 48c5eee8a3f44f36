"""Schemathesis hooks for scripts/fuzz-api.sh.

The fuzz run must not make ICON call anything but loopback: a checkout it completes is called
back at its `callback_url`, and an admin token can register a retailer whose `order_url` the
worker then calls. So every such URL that ICON could accept (an http(s) URL) is pointed at the
retailer simulator on 127.0.0.1 before the request is sent. Values ICON refuses anyway (another
scheme, relative, malformed) go through unchanged, so its validation is still fuzzed.
"""

import os

import schemathesis

SINK = os.environ["ICON_FUZZ_SINK"]  # e.g. http://127.0.0.1:PORT, the simulator


def _could_be_http(value: str) -> bool:
    # What a WHATWG URL parser would see: tabs and newlines removed, C0 controls and spaces
    # stripped from both ends, scheme case-insensitive.
    cleaned = "".join(c for c in value if c not in "\t\n\r").strip("".join(map(chr, range(33))))
    return cleaned.lower().startswith("http")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    body = case.body
    if not isinstance(body, dict):
        return
    path = case.operation.path
    if path.startswith("/cart/checkout") and isinstance(body.get("callback_url"), str):
        if _could_be_http(body["callback_url"]):
            body["callback_url"] = f"{SINK}/sink/fuzz"
    if path.startswith("/retailers/") and isinstance(body.get("order_url"), str):
        if _could_be_http(body["order_url"]):
            body["order_url"] = f"{SINK}/fuzz/orders"
