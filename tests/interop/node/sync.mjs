// The reference repo library judges our sync endpoints: `@atproto/repo` `verifyRepoCar` checks the
// `com.atproto.sync.getRepo` CAR (commit signature against the DID's signing key from the PLC
// directory, the whole MST, every record), `verifyRecords` the `sync.getRecord` proof of a present
// record, and `verifyProofs` with a `cid: null` claim its proof of an absent one.
// Env: PDS_URL, PLC_URL. Prints a JSON summary as its last line; exits 1 naming the failing step.
import { verifyRepoCar, verifyRecords, verifyProofs } from '@atproto/repo'

const pds = process.env.PDS_URL
const plc = process.env.PLC_URL
const summary = { ok: false, steps: [] }
let step = 'start'

async function xrpc(method, nsid, { body, token, query } = {}) {
  const url = new URL(`/xrpc/${nsid}`, pds)
  for (const [k, v] of Object.entries(query ?? {})) url.searchParams.append(k, v)
  const headers = {}
  if (body) headers['content-type'] = 'application/json'
  if (token) headers.authorization = `Bearer ${token}`
  const res = await fetch(url, { method, headers, body: body ? JSON.stringify(body) : undefined })
  if (!res.ok) throw new Error(`${nsid}: ${res.status} ${await res.text()}`)
  return res
}

async function run() {
  step = 'createAccount'
  const handle = `sync${Date.now() % 100000}.test`
  const acct = await (await xrpc('POST', 'com.atproto.server.createAccount', {
    body: { handle, email: `${handle}@example.com`, password: 'sync-judge-password' },
  })).json()
  const did = acct.did
  summary.steps.push(step)

  step = 'createRecords'
  const texts = []
  const cids = new Map() // rkey -> cid string, as createRecord said
  let last
  for (let i = 0; i < 12; i++) {
    const text = `judge post ${i}`
    texts.push(text)
    last = await (await xrpc('POST', 'com.atproto.repo.createRecord', {
      token: acct.accessJwt,
      body: { repo: did, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text, createdAt: new Date().toISOString() } },
    })).json()
    cids.set(last.uri.split('/').pop(), last.cid)
  }
  const rkey = last.uri.split('/').pop()
  summary.steps.push(step)

  step = 'signingKey'
  const data = await (await fetch(`${plc}/${did}/data`)).json()
  const didKey = data.verificationMethods?.atproto
  if (!didKey?.startsWith('did:key:')) throw new Error(`no atproto key in ${JSON.stringify(data)}`)
  summary.steps.push(step)

  step = 'getRepo/verifyRepoCar'
  const repoCar = new Uint8Array(await (await xrpc('GET', 'com.atproto.sync.getRepo', { query: { did } })).arrayBuffer())
  const verified = await verifyRepoCar(repoCar, did, didKey)
  const posts = verified.creates.filter((c) => c.collection === 'app.bsky.feed.post')
  if (posts.length !== texts.length) throw new Error(`expected ${texts.length} posts, verified ${posts.length}`)
  for (const [k, cid] of cids) {
    const c = posts.find((p) => p.rkey === k)
    if (!c || c.cid.toString() !== cid) throw new Error(`record ${k} (${cid}) missing from the verified repo`)
  }
  const latest = await (await xrpc('GET', 'com.atproto.sync.getLatestCommit', { query: { did } })).json()
  if (verified.commit.rev !== latest.rev) throw new Error(`rev ${verified.commit.rev} != latest ${latest.rev}`)
  summary.steps.push(step)

  step = 'getRecord/verifyRecords'
  const present = new Uint8Array(await (await xrpc('GET', 'com.atproto.sync.getRecord', {
    query: { did, collection: 'app.bsky.feed.post', rkey },
  })).arrayBuffer())
  const claims = await verifyRecords(present, did, didKey)
  const mine = claims.find((c) => c.collection === 'app.bsky.feed.post' && c.rkey === rkey)
  if (!mine || mine.record?.text !== texts[texts.length - 1]) throw new Error(`record not proven: ${JSON.stringify(claims)}`)
  const presence = await verifyProofs(present, [{ collection: 'app.bsky.feed.post', rkey, cid: null }], did, didKey)
  if (presence.unverified.length !== 1) throw new Error('a present record was proven absent')
  summary.steps.push(step)

  step = 'getRecord/absence'
  const absentKey = '2222222222222'
  const absent = new Uint8Array(await (await xrpc('GET', 'com.atproto.sync.getRecord', {
    query: { did, collection: 'app.bsky.feed.post', rkey: absentKey },
  })).arrayBuffer())
  const proof = await verifyProofs(absent, [{ collection: 'app.bsky.feed.post', rkey: absentKey, cid: null }], did, didKey)
  if (proof.verified.length !== 1) throw new Error(`absence not proven: ${JSON.stringify(proof)}`)
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
