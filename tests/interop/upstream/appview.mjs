// A stand-in AppView for the Bluesky-app tests (tests/integration/bsky_app.rs): an official
// @atproto/xrpc-server that checks every service JWT with the official verifier (`verifyJwt`: the
// issuer's #atproto key from the PLC directory the tests run, `exp`; the audience must be one it
// knows) and answers with canned views the test sets, under an `atproto-repo-rev` the test controls.
// Its identity is did:web:localhost%3A<PORT>; its DID document (served at /.well-known/did.json)
// has #bsky_appview, #other_appview and #bsky_notif entries pointing back at itself.
//
// Usage: PLC_URL=http://127.0.0.1:N node appview.mjs PORT
//   AUDIENCES=did1,did2  service-JWT audiences accepted besides its own (a feed generator, …)
// Prints `UPSTREAM_URL=…` and `UPSTREAM_DID=…` once it listens; exits when stdin closes.
//
// Control (plain HTTP, no auth):
//   POST /_control {rev?, answers?}  `rev`: the atproto-repo-rev header of every answer (null: none);
//                                    `answers`: {<nsid>: {status?, body?, raw?, contentType?}} merged
//                                    into the canned answers (`raw`: a body sent as is, not JSON)
//   GET  /_requests                  every XRPC call received so far: {nsid, method, query, body,
//                                    claims: {iss, aud, lxm}} (and forgets them)
// An XRPC method without a canned answer is 501 MethodNotImplemented. com.atproto.repo.getRecord
// is public (no JWT), as the AppView's is.
import { once } from 'node:events'
import { IdResolver } from '@atproto/identity'
import { createServer, verifyJwt } from '@atproto/xrpc-server'

const port = Number.parseInt(process.argv[2] ?? '', 10)
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`appview.mjs: expected a port number, got ${JSON.stringify(process.argv[2])}`)
  process.exit(2)
}
const plcUrl = process.env.PLC_URL
if (!plcUrl) {
  console.error('appview.mjs: PLC_URL is required')
  process.exit(2)
}
const self = `http://127.0.0.1:${port}`
const did = `did:web:localhost%3A${port}`
const audiences = new Set([did, ...(process.env.AUDIENCES ?? '').split(',').filter(Boolean)])
const resolver = new IdResolver({ plcUrl, timeout: 5000, fetch: globalThis.fetch })

const didDocument = {
  '@context': ['https://www.w3.org/ns/did/v1'],
  id: did,
  service: [
    { id: '#bsky_appview', type: 'BskyAppView', serviceEndpoint: self },
    { id: '#other_appview', type: 'BskyAppView', serviceEndpoint: self },
    { id: '#bsky_notif', type: 'BskyNotificationService', serviceEndpoint: self },
  ],
}

const state = { rev: null, answers: {} }
let requests = []

async function readBody(req) {
  const chunks = []
  for await (const c of req) chunks.push(c)
  const text = Buffer.concat(chunks).toString('utf8')
  return text ? JSON.parse(text) : null
}

async function claimsOf(req) {
  const auth = req.headers.authorization ?? ''
  if (!auth.startsWith('Bearer ')) {
    throw Object.assign(new Error('no bearer token'), { status: 401, error: 'AuthMissing' })
  }
  const payload = await verifyJwt(auth.slice('Bearer '.length), null, null, async (iss, forceRefresh) =>
    resolver.did.resolveAtprotoKey(iss, forceRefresh),
  )
  if (!audiences.has(payload.aud)) {
    throw Object.assign(new Error(`aud ${payload.aud} is not ours`), { status: 401, error: 'BadJwtAudience' })
  }
  return { iss: payload.iss, aud: payload.aud, lxm: payload.lxm }
}

const server = createServer([], {
  catchall: async (req, res) => {
    const url = new URL(req.url, self)
    const nsid = url.pathname.slice('/xrpc/'.length)
    let claims = null
    if (nsid !== 'com.atproto.repo.getRecord') {
      try {
        claims = await claimsOf(req)
      } catch (err) {
        return res.status(err.status ?? 401).json({ error: err.error ?? err.customErrorName ?? 'AuthRequired', message: err.message })
      }
    }
    const body = req.method === 'POST' ? await readBody(req) : null
    requests.push({ nsid, method: req.method, query: Object.fromEntries(url.searchParams), body, claims })
    if (state.rev !== null) res.setHeader('atproto-repo-rev', state.rev)
    const answer = state.answers[nsid]
    if (!answer) {
      return res.status(501).json({ error: 'MethodNotImplemented', message: `no canned answer for ${nsid}` })
    }
    res.status(answer.status ?? 200)
    if (answer.raw !== undefined) {
      res.type(answer.contentType ?? 'application/json').send(answer.raw)
    } else if (answer.body !== undefined) {
      res.json(answer.body)
    } else {
      res.end()
    }
  },
})

server.router.get('/.well-known/did.json', (_req, res) => res.json(didDocument))
server.router.post('/_control', async (req, res) => {
  const update = await readBody(req)
  if ('rev' in update) state.rev = update.rev
  Object.assign(state.answers, update.answers ?? {})
  res.json({ ok: true })
})
server.router.get('/_requests', (_req, res) => {
  res.json({ requests })
  requests = []
})

const http = server.router.listen(port, '127.0.0.1')
await once(http, 'listening')

const stop = () => process.exit(0)
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.stdin.on('end', stop)
process.stdin.on('close', stop)
process.stdin.resume()
process.stdout.write(`UPSTREAM_URL=${self}\n`)
process.stdout.write(`UPSTREAM_DID=${did}\n`)
