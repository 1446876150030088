// The reference repo library builds a repo, our importRepo takes it: `@atproto/repo` `Repo.create`
// makes RECORDS posts (one with an image blob) for the judge's own DID, signed by a key of its own;
// `getFullRepo` exports the CAR; the judge deactivates its account (a repo that is not ours yet: the
// signature is not checked, as when migrating in), imports the CAR, and checks
// `checkAccountStatus` (head = the library's commit, every record indexed, one expected blob) and
// `listMissingBlobs`; after `activateAccount` and one more post, `verifyRepoCar` checks our
// `getRepo` against the DID's key in the PLC directory and every record CID the library computed.
// Env: PDS_URL, PLC_URL, RECORDS (default 2000), STOP_AFTER_IMPORT (stop after the import's
// checks: for measuring the import alone). Prints a JSON summary (with the import's
// wall-clock time) as its last line; exits 1 naming the failing step.
import { Repo, MemoryBlockstore, WriteOpAction, getFullRepo, verifyRepoCar } from '@atproto/repo'
// A dependency of @atproto/repo (same lock file).
import { Secp256k1Keypair } from '@atproto/crypto'
import { TID } from '@atproto/common'
import { CID } from 'multiformats/cid'

const pds = process.env.PDS_URL
const plc = process.env.PLC_URL
const n = Number(process.env.RECORDS ?? 2000)
const summary = { ok: false, records: n, steps: [] }
let step = 'start'

async function xrpc(method, nsid, { body, token, query, raw, type } = {}) {
  const url = new URL(`/xrpc/${nsid}`, pds)
  for (const [k, v] of Object.entries(query ?? {})) url.searchParams.append(k, v)
  const headers = {}
  if (body) headers['content-type'] = 'application/json'
  if (raw) headers['content-type'] = type
  if (token) headers.authorization = `Bearer ${token}`
  const res = await fetch(url, { method, headers, body: raw ?? (body ? JSON.stringify(body) : undefined) })
  if (!res.ok) throw new Error(`${nsid}: ${res.status} ${await res.text()}`)
  return res
}

async function run() {
  step = 'createAccount'
  const handle = `imp${Date.now() % 100000}.test`
  const acct = await (await xrpc('POST', 'com.atproto.server.createAccount', {
    body: { handle, email: `${handle}@example.com`, password: 'import-judge-password' },
  })).json()
  const { did, accessJwt: token } = acct
  summary.steps.push(step)

  step = 'build with @atproto/repo'
  let t = Date.now()
  const storage = new MemoryBlockstore()
  const key = await Secp256k1Keypair.create()
  const blob = CID.parse('bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy')
  const writes = []
  for (let i = 0; i < n; i++) {
    const record = { $type: 'app.bsky.feed.post', text: `imported post ${i}`, createdAt: new Date(1700000000000 + i).toISOString() }
    if (i === 0) {
      record.embed = { $type: 'app.bsky.embed.images', images: [{ alt: '', image: { $type: 'blob', ref: blob, mimeType: 'image/png', size: 1234 } }] }
    }
    writes.push({ action: WriteOpAction.Create, collection: 'app.bsky.feed.post', rkey: TID.nextStr(), record })
  }
  const repo = await Repo.create(storage, did, key, writes)
  const chunks = []
  for await (const c of getFullRepo(storage, repo.cid)) chunks.push(c)
  const car = Buffer.concat(chunks)
  summary.buildMs = Date.now() - t
  summary.carBytes = car.length
  summary.steps.push(step)

  step = 'deactivateAccount'
  await xrpc('POST', 'com.atproto.server.deactivateAccount', { token, body: {} })
  summary.steps.push(step)

  step = 'importRepo'
  t = Date.now()
  await xrpc('POST', 'com.atproto.repo.importRepo', { token, raw: car, type: 'application/vnd.ipld.car' })
  summary.importMs = Date.now() - t
  summary.steps.push(step)

  step = 'checkAccountStatus'
  const status = await (await xrpc('GET', 'com.atproto.server.checkAccountStatus', { token })).json()
  if (status.repoCommit !== repo.cid.toString()) throw new Error(`repoCommit ${status.repoCommit} != ${repo.cid}`)
  if (status.indexedRecords !== n) throw new Error(`indexedRecords ${status.indexedRecords} != ${n}`)
  if (status.expectedBlobs !== 1 || status.importedBlobs !== 0) throw new Error(`blobs: ${JSON.stringify(status)}`)
  const missing = await (await xrpc('GET', 'com.atproto.repo.listMissingBlobs', { token })).json()
  if (missing.blobs.length !== 1 || missing.blobs[0].cid !== blob.toString()) throw new Error(`listMissingBlobs: ${JSON.stringify(missing)}`)
  summary.steps.push(step)
  if (process.env.STOP_AFTER_IMPORT) {
    summary.ok = true
    return
  }

  step = 'activate and write'
  await xrpc('POST', 'com.atproto.server.activateAccount', { token })
  await xrpc('POST', 'com.atproto.repo.createRecord', {
    token,
    body: { repo: did, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: 'after import', createdAt: new Date().toISOString() } },
  })
  summary.steps.push(step)

  step = 'getRepo/verifyRepoCar'
  const data = await (await fetch(`${plc}/${did}/data`)).json()
  const didKey = data.verificationMethods?.atproto
  const exported = new Uint8Array(await (await xrpc('GET', 'com.atproto.sync.getRepo', { query: { did } })).arrayBuffer())
  const verified = await verifyRepoCar(exported, did, didKey)
  if (verified.creates.length !== n + 1) throw new Error(`verified ${verified.creates.length} records, expected ${n + 1}`)
  const ours = new Map(verified.creates.map((c) => [c.rkey, c.cid.toString()]))
  for (const w of writes) {
    const expected = (await repo.data.get(`${w.collection}/${w.rkey}`)).toString()
    if (ours.get(w.rkey) !== expected) throw new Error(`record ${w.rkey}: ${ours.get(w.rkey)} != ${expected}`)
  }
  summary.steps.push(step)
  summary.ok = true
}

try {
  await run()
} catch (e) {
  summary.failed = step
  summary.error = String(e?.stack ?? e)
}
console.log(JSON.stringify(summary))
process.exit(summary.ok ? 0 : 1)
