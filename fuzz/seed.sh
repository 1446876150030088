#!/usr/bin/env bash
# Seeds the fuzz corpora from the official fixtures (corpora are gitignored; rerun at will).
#   fuzz/seed.sh [ATPROTO_DIR]   (default: the copy in the repository, tests/fixtures/atproto)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
atproto="${1:-${ATPROTO_FIXTURES:-$here/../tests/fixtures/atproto}}"
python3 - "$atproto" "$here/corpus" <<'PY'
import base64, hashlib, json, os, sys

atproto, corpus = sys.argv[1], sys.argv[2]

def b64(s):
    s = s.strip()
    return base64.b64decode(s + "=" * (-len(s) % 4)) if "-" not in s and "_" not in s \
        else base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

def put(target, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)

counts = {}
def add(target, data):
    put(target, data)
    counts[target] = counts.get(target, 0) + 1

# DAG-CBOR: data-model fixtures and every block of the CAR fixtures.
for case in json.load(open(os.path.join(atproto, "interop-tests/data-model/data-model-fixtures.json"))):
    add("cbor_decode", b64(case["cbor_base64"]))
cars = json.load(open(os.path.join(atproto, "interop-tests-extra/repo-car-file-fixtures.json")))
for case in cars:
    for block in case["blocks"]:
        add("cbor_decode", b64(block["bytes"]))
    car = b64(case["car"])
    add("car_read", car)
    add("mst_load", car)
# Small hand-made CBOR edge cases (some valid, some not): the fuzzer mutates from them.
for hexs in ["a0", "80", "f6", "f5", "00", "17", "1818", "20", "3bffffffffffffffff", "6161", "4100",
             "a1616100", "a2616100616201", "d82a582300017112200000000000000000000000000000000000000000000000000000000000000000"]:
    add("cbor_decode", bytes.fromhex(hexs))
for target, n in sorted(counts.items()):
    print(f"{target}: {n} seeds")
PY
# Real MST exports built by the domain crate itself (valid hashes, pre-order node blocks).
(cd "$here" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}" cargo run -q --release --example mst_seed -- "$here/corpus")
ls "$here/corpus" | while read -r t; do echo "$t: $(ls "$here/corpus/$t" | wc -l) files"; done
