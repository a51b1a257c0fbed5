"""Unary gRPC calls through GateKeeper with grpcio, the C-core client under qdrant-client.

Reads a JSON list of calls on stdin, each {"method", "key", "sni", "authority", "message_hex"},
and prints one JSON object per call: {"code": "<grpc.StatusCode name>", "details": "..."}.
Environment: GRPC_TARGET (host:port to connect to) and GRPC_CA (PEM file to trust, only it).
Used by tests/gatekeeper.rs; grpcio is what reported a gateway refusal as
"Stream removed (Data frame with END_STREAM flag received)" instead of its status.
"""

import json
import os
import sys

import grpc


def call(target, ca, c):
    options = [
        ("grpc.ssl_target_name_override", c["sni"]),
        ("grpc.default_authority", c["authority"]),
    ]
    creds = grpc.ssl_channel_credentials(root_certificates=ca)
    with grpc.secure_channel(target, creds, options=options) as channel:
        rpc = channel.unary_unary(c["method"])
        metadata = [("api-key", c["key"])] if c.get("key") else []
        try:
            rpc(bytes.fromhex(c["message_hex"]), metadata=metadata, timeout=10)
            return {"code": "OK", "details": ""}
        except grpc.RpcError as e:
            return {"code": e.code().name, "details": e.details() or ""}


def main():
    target = os.environ["GRPC_TARGET"]
    with open(os.environ["GRPC_CA"], "rb") as f:
        ca = f.read()
    for c in json.load(sys.stdin):
        print(json.dumps(call(target, ca, c)), flush=True)


if __name__ == "__main__":
    main()
