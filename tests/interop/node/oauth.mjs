// The reference OAuth client (@atproto/oauth-client-node 0.5.3) judging our authorization and
// resource server: a loopback client (http://localhost?redirect_uri=…&scope=…) authorizes by
// handle (handle → DID through our resolveHandle, DID → PDS through the PLC directory, PDS →
// protected-resource → authorization-server metadata), the script drives the HTML sign-in and
// consent page over HTTP (device cookie, CSRF token, 303 back with iss/state/code), the client
// exchanges the code (PAR, token and every request with DPoP and server nonces), then
// authenticated XRPC calls through @atproto/api's Agent (getSession, createRecord, getRecord),
// a forced refresh (the refresh token rotates), more calls, and signOut (revocation), after
// which the saved tokens no longer work.
//
// Usage: PDS_URL=http://localhost:PORT PLC_URL=http://127.0.0.1:PORT node oauth.mjs
// Exit 0 with a JSON summary on stdout; otherwise exit 1 with the failing step on stderr.
import { randomBytes } from 'node:crypto'
import { NodeOAuthClient, requestLocalLock } from '@atproto/oauth-client-node'
import { Agent } from '@atproto/api'

const pds = process.env.PDS_URL
const plc = process.env.PLC_URL
if (!pds || !plc) {
  console.error('oauth.mjs: set PDS_URL and PLC_URL')
  process.exit(2)
}
const summary = { pds, steps: [] }
let current = 'start'
const check = (cond, what, got) => {
  if (!cond) throw new Error(`${what}${got === undefined ? '' : `: got ${JSON.stringify(got)}`}`)
}
async function step(name, fn) {
  current = name
  const started = performance.now()
  const detail = await fn()
  summary.steps.push({ step: name, ms: Math.round(performance.now() - started), ...(detail ?? {}) })
  return detail
}

const handle = `oauth${randomBytes(4).toString('hex')}.test`
const password = `pw-${randomBytes(8).toString('hex')}`
const redirect = 'http://127.0.0.1:9/callback'
const scope = 'atproto transition:generic'
const clientId = `http://localhost?redirect_uri=${encodeURIComponent(redirect)}&scope=${encodeURIComponent(scope)}`

const stateMap = new Map()
const sessionMap = new Map()
const store = (m) => ({
  async get(k) { return m.get(k) },
  async set(k, v) { m.set(k, v) },
  async del(k) { m.delete(k) },
})

try {
  let did
  await step('createAccount', async () => {
    const r = await fetch(`${pds}/xrpc/com.atproto.server.createAccount`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ handle, email: `${handle}@example.com`, password }),
    })
    const body = await r.json()
    check(r.status === 200, 'createAccount', body)
    did = body.did
    return { did }
  })

  const client = new NodeOAuthClient({
    clientMetadata: {
      client_id: clientId,
      redirect_uris: [redirect],
      scope,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      dpop_bound_access_tokens: true,
    },
    stateStore: store(stateMap),
    sessionStore: store(sessionMap),
    requestLock: requestLocalLock,
    allowHttp: true,
    handleResolver: pds,
    plcDirectoryUrl: plc,
  })

  const authorizeUrl = await step('authorize (PAR)', async () => {
    const url = await client.authorize(handle, { scope })
    check(url.origin === pds && url.pathname === '/oauth/authorize', 'authorize URL', url.href)
    check(url.searchParams.get('request_uri')?.startsWith('urn:ietf:params:oauth:request_uri:'), 'request_uri', url.href)
    return { url: url.href }
  })

  const { cookie, form } = await step('consent page', async () => {
    const r = await fetch(authorizeUrl.url)
    const html = await r.text()
    check(r.status === 200, 'authorize page status', r.status)
    const setCookie = r.headers.get('set-cookie') ?? ''
    const cookie = setCookie.split(';')[0]
    check(cookie.startsWith('oauth-device=dev-'), 'device cookie', setCookie)
    const field = (name) => {
      const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`))
      return m ? m[1].replaceAll('&amp;', '&').replaceAll('&quot;', '"') : undefined
    }
    const form = { request_uri: field('request_uri'), client_id: field('client_id'), csrf: field('csrf'), identifier: field('identifier') }
    check(form.csrf && form.request_uri && form.client_id === clientId, 'form fields', form)
    check(form.identifier === handle, 'login_hint prefilled', form.identifier)
    check(html.includes('value="transition:generic"'), 'scope listed', html)
    return { cookie, form }
  })

  const callbackParams = await step('sign in + approve (303)', async () => {
    const body = new URLSearchParams({ ...form, password, action: 'approve' })
    body.append('scope', 'atproto')
    body.append('scope', 'transition:generic')
    const r = await fetch(`${pds}/oauth/authorize`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, origin: pds },
      body,
    })
    check(r.status === 303, 'approve status', { status: r.status, body: await r.text() })
    const location = new URL(r.headers.get('location'))
    check(location.origin + location.pathname === redirect, 'redirect target', location.href)
    check(location.searchParams.get('iss') === pds, 'iss', location.href)
    check(location.searchParams.get('code')?.startsWith('cod-'), 'code', location.href)
    return { params: location.searchParams.toString() }
  })

  let session
  await step('callback (token)', async () => {
    session = (await client.callback(new URLSearchParams(callbackParams.params))).session
    check(session.did === did, 'session DID', session.did)
    const info = await session.getTokenInfo(false)
    check(info.scope.split(' ').includes('transition:generic'), 'granted scope', info.scope)
    check(info.iss === pds, 'token iss', info.iss)
    return { scope: info.scope }
  })

  const agent = new Agent(session)
  await step('getSession (DPoP)', async () => {
    const r = await agent.com.atproto.server.getSession()
    check(r.data.did === did && r.data.handle === handle, 'getSession', r.data)
  })
  let uri
  await step('createRecord (DPoP)', async () => {
    const r = await agent.com.atproto.repo.createRecord({
      repo: did,
      collection: 'app.bsky.feed.post',
      record: { $type: 'app.bsky.feed.post', text: 'hello from OAuth', createdAt: new Date().toISOString() },
    })
    uri = r.data.uri
    check(uri.startsWith(`at://${did}/app.bsky.feed.post/`), 'record uri', r.data)
    return { uri }
  })

  const before = structuredClone({ refresh: sessionMap.get(did).tokenSet.refresh_token, access: sessionMap.get(did).tokenSet.access_token })
  await step('refresh', async () => {
    await session.getTokenInfo(true)
    const after = sessionMap.get(did).tokenSet
    check(after.refresh_token !== before.refresh && after.access_token !== before.access, 'tokens rotated')
    const r = await agent.com.atproto.repo.getRecord({ repo: did, collection: 'app.bsky.feed.post', rkey: uri.split('/').pop() })
    check(r.data.value.text === 'hello from OAuth', 'getRecord after refresh', r.data)
    const s = await agent.com.atproto.server.getSession()
    check(s.data.did === did, 'getSession after refresh', s.data)
  })

  await step('signOut (revoke)', async () => {
    const saved = sessionMap.get(did)
    await session.signOut()
    check(!sessionMap.has(did), 'session deleted locally')
    // Put the revoked tokens back: the server must refuse them (token and refresh both dead).
    sessionMap.set(did, saved)
    let refused = false
    try {
      const restored = await client.restore(did, false)
      await new Agent(restored).com.atproto.server.getSession()
    } catch (e) {
      refused = true
      summary.revokedError = String(e?.message ?? e)
    }
    check(refused, 'revoked session still works')
  })

  summary.ok = true
  console.log(JSON.stringify(summary))
} catch (e) {
  console.error(`oauth.mjs: step ${current} failed: ${e?.stack ?? e}`)
  console.log(JSON.stringify({ ...summary, ok: false, failed: current, error: String(e?.message ?? e) }))
  process.exit(1)
}
