// A real upstream for the proxy tests (tests/integration/proxy.rs): an @atproto/xrpc-server whose
// catch-all answers every XRPC method after checking the caller's service-auth JWT with the
// official verifier (`verifyJwt`: signature against the issuer's #atproto key, resolved through
// the PLC directory the tests run, with @atproto/identity; `exp`; `lxm` = the called NSID), and
// echoes what it received. Its own identity is did:web:localhost%3A<PORT>, whose DID document it
// serves at /.well-known/did.json with service entries pointing back at itself.
//
// Usage: PLC_URL=http://127.0.0.1:N node server.mjs PORT
//   AUDIENCES=did1,did2  service DIDs accepted as `aud` besides its own (the configured ones)
// Prints `UPSTREAM_URL=http://127.0.0.1:PORT` once it listens; exits when stdin closes.
//
// Behaviours, by query parameter `mode` (the query reaches it through the proxy):
//   (none)        200 JSON echo: method, path, host, headers (no authorization), verified claims,
//                 body size, sha256 and chunk count; sends back the headers the proxy must pass
//                 (atproto-repo-rev, atproto-content-labelers, content-language) and some it
//                 must not (set-cookie, x-upstream-secret)
//   error         `status` with {error: "UpstreamSaysNo", message: "upstream said no"} and
//                 retry-after / atproto-repo-rev headers
//   html-error    `status` with an HTML body
//   hang          never answers
//   stall-body    headers and half a body, then silence
//   big           `size` bytes, chunked (no content-length)
//   big-declared  `size` bytes with content-length
// Uploads (POST) also record their progress under `upload=<id>`: GET /progress?id=<id> answers
// {bytes, chunks} while the body is still arriving. GET /stats: {didFetches} (DID document reads).
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { IdResolver } from '@atproto/identity'
import { createServer, verifyJwt } from '@atproto/xrpc-server'

const port = Number.parseInt(process.argv[2] ?? '', 10)
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`server.mjs: expected a port number, got ${JSON.stringify(process.argv[2])}`)
  process.exit(2)
}
const plcUrl = process.env.PLC_URL
if (!plcUrl) {
  console.error('server.mjs: PLC_URL is required (the directory our accounts live in)')
  process.exit(2)
}
const self = `http://127.0.0.1:${port}`
const did = `did:web:localhost%3A${port}`
const audiences = new Set([did, ...(process.env.AUDIENCES ?? '').split(',').filter(Boolean)])
// The default fetch refuses plain HTTP and IP hosts (SSRF protection); the test directory is both.
const resolver = new IdResolver({ plcUrl, timeout: 5000, fetch: globalThis.fetch })
const progress = new Map()

const didDocument = {
  '@context': ['https://www.w3.org/ns/did/v1'],
  id: did,
  service: [
    { id: '#test_svc', type: 'TestService', serviceEndpoint: self },
    { id: '#bsky_appview', type: 'BskyAppView', serviceEndpoint: self },
    { id: `${did}#atproto_labeler`, type: 'AtprotoLabeler', serviceEndpoint: `http://localhost:${port}` },
    { id: '#not_http', type: 'TestService', serviceEndpoint: 'ftp://127.0.0.1/' },
    { id: '#public_name', type: 'TestService', serviceEndpoint: `https://localhost:${port}` },
  ],
}

function xrpcError(res, status, error, message) {
  res.status(status).json({ error, message })
}

async function authenticate(req, nsid) {
  const auth = req.headers.authorization ?? ''
  if (!auth.startsWith('Bearer ')) {
    throw Object.assign(new Error('no bearer token'), { status: 401, error: 'AuthMissing' })
  }
  const jwt = auth.slice('Bearer '.length)
  const [header] = jwt.split('.')
  const payload = await verifyJwt(jwt, null, nsid, async (iss, forceRefresh) =>
    resolver.did.resolveAtprotoKey(iss, forceRefresh),
  )
  if (!audiences.has(payload.aud)) {
    throw Object.assign(new Error(`aud ${payload.aud} is not ours`), { status: 401, error: 'BadJwtAudience' })
  }
  return { ...payload, header: JSON.parse(Buffer.from(header, 'base64url').toString('utf8')) }
}

const server = createServer([], {
  catchall: async (req, res) => {
    const url = new URL(req.url, self)
    const nsid = url.pathname.slice('/xrpc/'.length)
    const mode = url.searchParams.get('mode')
    const status = Number.parseInt(url.searchParams.get('status') ?? '400', 10)
    const size = Number.parseInt(url.searchParams.get('size') ?? '0', 10)
    let claims
    try {
      claims = await authenticate(req, nsid)
    } catch (err) {
      return xrpcError(res, err.status ?? 401, err.error ?? err.customErrorName ?? 'AuthRequired', err.message)
    }
    if (mode === 'hang') return // never answer
    if (mode === 'error') {
      res.setHeader('retry-after', '7')
      res.setHeader('atproto-repo-rev', 'rev-on-error')
      return xrpcError(res, status, 'UpstreamSaysNo', 'upstream said no')
    }
    if (mode === 'html-error') {
      res.status(status).type('text/html').send('<html><body>Bad Gateway</body></html>')
      return
    }
    if (mode === 'stall-body') {
      res.status(200).type('application/json')
      res.write('{"partial": ')
      return // and never finish
    }
    if (mode === 'big' || mode === 'big-declared') {
      res.status(200).type('application/octet-stream')
      if (mode === 'big-declared') res.setHeader('content-length', String(size))
      const chunk = Buffer.alloc(64 * 1024, 0x61)
      let left = size
      while (left > 0) {
        const n = Math.min(left, chunk.length)
        left -= n
        if (!res.write(chunk.subarray(0, n))) await once(res, 'drain')
        if (res.destroyed) return
      }
      res.end()
      return
    }
    // Echo: read the whole body as it comes, recording progress.
    const uploadId = url.searchParams.get('upload')
    const hash = createHash('sha256')
    let bytes = 0
    let chunks = 0
    for await (const chunk of req) {
      bytes += chunk.length
      chunks += 1
      hash.update(chunk)
      if (uploadId) progress.set(uploadId, { bytes, chunks })
    }
    const headers = { ...req.headers }
    delete headers.authorization
    res.setHeader('atproto-repo-rev', '3lecho')
    res.setHeader('atproto-content-labelers', 'did:plc:labeler')
    res.setHeader('content-language', 'en')
    res.setHeader('set-cookie', 'upstream=secret')
    res.setHeader('x-upstream-secret', 'do-not-forward')
    res.status(200).json({
      nsid,
      method: req.method,
      path: req.url,
      host: req.headers.host,
      headers,
      claims,
      body: { bytes, chunks, sha256: hash.digest('hex') },
    })
  },
})

let didFetches = 0
server.router.get('/.well-known/did.json', (_req, res) => {
  didFetches += 1
  res.json(didDocument)
})
server.router.get('/stats', (_req, res) => res.json({ didFetches }))
server.router.get('/progress', (req, res) => {
  res.json(progress.get(req.query.id) ?? { bytes: 0, chunks: 0 })
})

const http = server.router.listen(port, '127.0.0.1')
await once(http, 'listening')
http.requestTimeout = 0 // uploads may take long; the tests bound them

const stop = () => process.exit(0)
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.stdin.on('end', stop)
process.stdin.on('close', stop)
process.stdin.resume()
process.stdout.write(`UPSTREAM_URL=${self}\n`)
process.stdout.write(`UPSTREAM_DID=${did}\n`)
