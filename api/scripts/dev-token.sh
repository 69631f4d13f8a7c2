#!/bin/sh
# Prints an access token from a MOCK_AUTH=true `suiftly api` at $1 (default 127.0.0.1:19470).
H=${1:-127.0.0.1:19470}
A=0x$(printf 'cd%.0s' $(seq 32))
N=$(curl -s -XPOST $H/auth/connect -H 'content-type: application/json' -d "{\"walletAddress\":\"$A\"}" | python3 -c 'import sys,json;print(json.load(sys.stdin)["nonce"])')
curl -s -XPOST $H/auth/verify -H 'content-type: application/json' -d "{\"walletAddress\":\"$A\",\"signature\":\"x\",\"nonce\":\"$N\"}" | python3 -c 'import sys,json;print(json.load(sys.stdin)["accessToken"])'
