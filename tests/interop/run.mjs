// The conformance suite: every third-party judge against one running server, one count line.
// Judges (each a subprocess printing a JSON summary of named steps, exiting non-zero at the first
// failing step): @atproto/api AtpAgent (node/agent.mjs), the Bluesky app's calls through it
// (node/bsky.mjs; read-after-write when APPVIEW_URL names the canned AppView), @atproto/repo verifyRepoCar/verifyRecords
// (node/sync.mjs), @atproto/identity through the PLC directory (node/identity.mjs), @atproto/sync
// Firehose with proofs on (node/firehose.mjs), @atproto/oauth-client-node through a whole OAuth
// session with DPoP (node/oauth.mjs, on the server's public `localhost` origin), the Python atproto SDK incl.
// FirehoseSubscribeReposClient (python/login.py, on an account this runner creates).
// Every step a judge passed counts as passed; a judge that fails counts one failure, named
// `<judge>: step <step>: <message>`. Output ends with `N passed, N failed`; exit 1 if N failed > 0.
// Env: PDS_URL, PLC_URL, [PDS_ADMIN_PASSWORD], [PDS_JWT_SECRET], [PDS_HANDLE_DOMAIN=.test], [APPVIEW_URL],
//      [INTEROP_ONLY=name,name] (run only these judges).
// Usage: tests/interop/run   (the wrapper runs this on the Node 22 installed by scripts/interop-install)
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const { PDS_URL: pds, PLC_URL: plc } = process.env
if (!pds || !plc) {
  console.error('tests/interop/run: set PDS_URL and PLC_URL')
  process.exit(2)
}
const domain = process.env.PDS_HANDLE_DOMAIN ?? '.test'
const node = process.execPath
const python = join(here, 'python/.venv/bin/python')
const only = process.env.INTEROP_ONLY?.split(',').filter(Boolean)
const limitMs = 180_000

/** Runs one judge; resolves to {code, summary, stdout, stderr}. */
function run(program, args, env, cwd) {
  return new Promise((resolve) => {
    const child = spawn(program, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), limitMs)
    child.on('error', (err) => {
      clearTimeout(timer)
      resolve({ code: -1, summary: null, stdout, stderr: `${stderr}${err}` })
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      let summary = null
      for (const line of stdout.trim().split('\n').reverse()) {
        try {
          summary = JSON.parse(line)
          break
        } catch {}
      }
      resolve({ code: code ?? (signal ? `killed by ${signal} (limit ${limitMs} ms)` : -1), summary, stdout, stderr })
    })
  })
}

/** A fresh account for the Python judge (it logs in to an existing one). */
async function pythonAccount() {
  const suffix = randomBytes(5).toString('hex')
  const account = { handle: `py${suffix}${domain}`, password: `pw-${suffix}` }
  const res = await fetch(new URL('/xrpc/com.atproto.server.createAccount', pds), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...account, email: `py${suffix}@example.com` }),
  })
  if (!res.ok) throw new Error(`createAccount for the Python judge: ${res.status} ${await res.text()}`)
  return { ...account, did: (await res.json()).did }
}

const judges = [
  { name: 'agent.mjs', cmd: () => [node, ['agent.mjs'], {}, join(here, 'node')] },
  // The Bluesky app's client: preferences, profile, and (with APPVIEW_URL, the canned AppView the
  // server is configured with) read-after-write through getTimeline / getProfile.
  { name: 'bsky.mjs', cmd: () => [node, ['bsky.mjs'], {}, join(here, 'node')] },
  { name: 'sync.mjs', cmd: () => [node, ['sync.mjs'], {}, join(here, 'node')] },
  { name: 'identity.mjs', cmd: () => [node, ['identity.mjs'], {}, join(here, 'node')] },
  { name: 'firehose.mjs', cmd: () => [node, ['firehose.mjs'], {}, join(here, 'node')] },
  // OAuth's issuer is the server's public origin (http://localhost:PORT in dev), so the client
  // must name the server by it.
  { name: 'oauth.mjs', cmd: () => [node, ['oauth.mjs'], { PDS_URL: pds.replace('//127.0.0.1', '//localhost') }, join(here, 'node')] },
  {
    name: 'login.py',
    setup: pythonAccount,
    cmd: (acct) => [python, ['login.py'], { PDS_HANDLE: acct.handle, PDS_PASSWORD: acct.password, PDS_DID: acct.did }, join(here, 'python')],
  },
].filter((j) => !only || only.includes(j.name))

let passed = 0
const failures = []
for (const judge of judges) {
  let setup
  try {
    setup = judge.setup ? await judge.setup() : undefined
  } catch (err) {
    failures.push(`${judge.name}: step setup: ${err.message}`)
    console.log(`FAIL ${judge.name}: step setup: ${err.message}`)
    continue
  }
  const [program, args, env, cwd] = judge.cmd(setup)
  const started = performance.now()
  const r = await run(program, args, { PDS_URL: pds, PLC_URL: plc, ...env }, cwd)
  const ms = Math.round(performance.now() - started)
  const steps = (r.summary?.steps ?? []).map((s) => (typeof s === 'string' ? s : s.step))
  passed += steps.length
  const ok = r.code === 0 && r.summary?.ok === true
  if (ok) {
    console.log(`ok   ${judge.name} (${steps.length} steps, ${ms} ms)`)
    continue
  }
  const f = r.summary?.failure ?? {}
  const step = f.step ?? r.summary?.failed ?? '(no summary)'
  const message = f.message ?? r.summary?.error?.split('\n')[0] ?? `exit ${r.code}`
  const line = `${judge.name}: step ${step}: ${message}`
  failures.push(line)
  console.log(`FAIL ${line} (after ${steps.length} passed steps, ${ms} ms)`)
  if (process.env.INTEROP_VERBOSE) console.log(`--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`)
}
for (const f of failures) console.log(`failed: ${f}`)
console.log(`${passed} passed, ${failures.length} failed`)
process.exit(failures.length ? 1 : 0)
