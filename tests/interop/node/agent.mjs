// The reference JS client (@atproto/api's AtpAgent) judging our PDS: it validates every response
// against the lexicons, so a wrong shape, status or error name fails here.
//
// Usage: PDS_URL=http://127.0.0.1:PORT node agent.mjs
//        (PDS_HANDLE_DOMAIN, default ".test": the suffix of the new account's handle;
//         PDS_JWT_SECRET, when given: also check the agent's recovery from an expired access token)
// Steps: describeServer, createAccount (<random>.test, email, password), login (handle, email and
// DID) in fresh agents, a wrong password, getSession, resolveHandle (and an unknown handle),
// describeRepo, uploadBlob (a PNG sent as application/octet-stream) + a post embedding it + the
// post, getBlob, listBlobs and listMissingBlobs read back, refreshSession through the session manager, resumeSession
// of the saved session in a fresh agent, logout — and that the logged-out refresh token is dead.
// Exit 0 with a JSON summary on stdout; otherwise exit 1 with the failing step and error on stderr.
import { createHmac, randomBytes } from 'node:crypto'
import { AtpAgent } from '@atproto/api'

const service = process.env.PDS_URL
if (!service) {
  console.error('agent.mjs: set PDS_URL (e.g. http://127.0.0.1:2583)')
  process.exit(2)
}
const domain = process.env.PDS_HANDLE_DOMAIN ?? '.test'

const summary = { service, steps: [] }
let current = 'start'

function check(cond, what, got) {
  if (!cond) {
    throw new Error(`${what}${got === undefined ? '' : `: got ${JSON.stringify(got)}`}`)
  }
}

async function step(name, fn) {
  current = name
  const started = performance.now()
  const detail = await fn()
  summary.steps.push({ step: name, ms: Math.round(performance.now() - started), ...(detail ?? {}) })
}

const decodeJwt = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'))
const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url')
// An HS256 JWT like the server's own, signed with PDS_JWT_SECRET (for the expired-token step).
function signJwt(header, claims, secret) {
  const input = `${b64(header)}.${b64(claims)}`
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
}
const jwtSecret = process.env.PDS_JWT_SECRET

try {
  const suffix = randomBytes(5).toString('hex')
  const handle = `js${suffix}${domain}`
  const email = `js${suffix}@example.com`
  const password = `pw-${randomBytes(12).toString('hex')}`
  let did

  await step('describeServer', async () => {
    const agent = new AtpAgent({ service })
    const res = await agent.com.atproto.server.describeServer()
    check(res.success, 'describeServer not successful')
    check(res.data.did?.startsWith('did:'), 'describeServer.did', res.data.did)
    check(res.data.availableUserDomains.includes(domain), `availableUserDomains lacks ${domain}`, res.data.availableUserDomains)
    return { did: res.data.did, availableUserDomains: res.data.availableUserDomains, inviteCodeRequired: res.data.inviteCodeRequired }
  })

  await step('createAccount', async () => {
    const agent = new AtpAgent({ service })
    const res = await agent.createAccount({ handle, email, password })
    did = res.data.did
    check(did.startsWith('did:plc:'), 'createAccount.did', did)
    check(res.data.handle === handle, 'createAccount.handle', res.data.handle)
    check(agent.hasSession && agent.session.did === did, 'no session after createAccount', agent.session)
    const who = await agent.com.atproto.server.getSession()
    check(who.data.did === did && who.data.handle === handle, 'getSession after createAccount', who.data)
    return { did, handle, pdsUrl: agent.pdsUrl?.href ?? null }
  })

  for (const identifier of [email, did]) {
    await step(`login(${identifier === did ? 'did' : 'email'})`, async () => {
      const agent = new AtpAgent({ service })
      const res = await agent.login({ identifier, password })
      check(res.data.did === did && res.data.handle === handle, 'login', res.data)
    })
  }

  const agent = new AtpAgent({ service })
  await step('login(handle)', async () => {
    const res = await agent.login({ identifier: handle, password })
    check(res.data.did === did && res.data.handle === handle, 'login', res.data)
    check(res.data.email === email, 'login.email', res.data.email)
    check(res.data.active !== false, 'login.active', res.data.active)
    const claims = decodeJwt(res.data.accessJwt)
    check(claims.sub === did, 'access JWT sub', claims)
    return { accessScope: claims.scope, accessAud: claims.aud ?? null }
  })

  await step('wrongPassword', async () => {
    const bad = new AtpAgent({ service })
    try {
      await bad.login({ identifier: handle, password: `${password}-wrong` })
    } catch (err) {
      check(err.status === 401 && err.error === 'AuthenticationRequired', 'wrong password error', { status: err.status, error: err.error })
      return { status: err.status, error: err.error }
    }
    throw new Error('login with a wrong password succeeded')
  })

  await step('getSession', async () => {
    const res = await agent.com.atproto.server.getSession()
    check(res.data.did === did && res.data.handle === handle && res.data.email === email, 'getSession', res.data)
    return { active: res.data.active ?? null, emailConfirmed: res.data.emailConfirmed ?? null }
  })

  await step('resolveHandle', async () => {
    const res = await agent.com.atproto.identity.resolveHandle({ handle })
    check(res.data.did === did, 'resolveHandle.did', res.data)
    try {
      await agent.com.atproto.identity.resolveHandle({ handle: `nobody-${suffix}${domain}` })
    } catch (err) {
      check(err.status === 400, 'resolveHandle(unknown) status', err.status)
      return { unknown: { status: err.status, error: err.error, class: err.constructor.name } }
    }
    throw new Error('an unknown handle resolved')
  })

  await step('describeRepo', async () => {
    const res = await agent.com.atproto.repo.describeRepo({ repo: did })
    check(res.data.did === did && res.data.handle === handle, 'describeRepo', res.data)
    check(res.data.handleIsCorrect === true, 'describeRepo.handleIsCorrect', res.data.handleIsCorrect)
    check(res.data.didDoc?.id === did, 'describeRepo.didDoc.id', res.data.didDoc)
    return { collections: res.data.collections }
  })

  // Blobs: upload an image, post it as an image embed, read the post and the blob back.
  const png = Buffer.concat([
    Buffer.from('89504e470d0a1a0a', 'hex'),
    Buffer.from('0000000d49484452000000010000000108060000001f15c489', 'hex'),
    Buffer.from('0000000b49444154789c6360000200000500017a5eab3f', 'hex'),
    Buffer.from('0000000049454e44ae426082', 'hex'),
  ])
  let blob
  await step('uploadBlob', async () => {
    // A lying encoding: the server sniffs the PNG.
    const res = await agent.uploadBlob(new Uint8Array(png), { encoding: 'application/octet-stream' })
    blob = res.data.blob
    check(blob.mimeType === 'image/png', 'uploadBlob.mimeType', blob.mimeType)
    check(blob.size === png.length, 'uploadBlob.size', blob.size)
    check(blob.ref.toString().startsWith('bafkrei'), 'uploadBlob.ref', blob.ref.toString())
    return { cid: blob.ref.toString(), mimeType: blob.mimeType, size: blob.size }
  })
  let imagePost
  await step('postWithImage', async () => {
    imagePost = await agent.post({
      text: 'a picture',
      embed: { $type: 'app.bsky.embed.images', images: [{ image: blob, alt: 'one pixel' }] },
    })
    check(imagePost.uri.startsWith(`at://${did}/app.bsky.feed.post/`), 'post.uri', imagePost.uri)
    return { uri: imagePost.uri }
  })
  await step('readBackImage', async () => {
    const rkey = imagePost.uri.split('/').pop()
    const rec = await agent.com.atproto.repo.getRecord({ repo: did, collection: 'app.bsky.feed.post', rkey })
    const image = rec.data.value.embed?.images?.[0]?.image
    check(image?.ref?.toString() === blob.ref.toString(), 'the embed image ref', image)
    check(image.mimeType === 'image/png' && image.size === png.length, 'the embed image type and size', image)
    const got = await agent.com.atproto.sync.getBlob({ did, cid: blob.ref.toString() })
    check(Buffer.from(got.data).equals(png), 'getBlob bytes', Buffer.from(got.data).toString('hex'))
    check(got.headers['content-type'] === 'image/png', 'getBlob content-type', got.headers['content-type'])
    const listed = await agent.com.atproto.sync.listBlobs({ did })
    check(listed.data.cids.includes(blob.ref.toString()), 'listBlobs', listed.data)
    const missing = await agent.com.atproto.repo.listMissingBlobs({})
    check(Array.isArray(missing.data.blobs) && missing.data.blobs.length === 0, 'listMissingBlobs', missing.data)
  })

  await step('refreshSession', async () => {
    const before = { ...agent.session }
    const res = await agent.sessionManager.refreshSession()
    check(res.data.did === did, 'refreshSession.did', res.data)
    check(agent.session.refreshJwt !== before.refreshJwt, 'refresh token not rotated')
    // No check that the access token changed: like the reference's, it has no jti, so one
    // issued in the same second as the last is the same string.
    const who = await agent.com.atproto.server.getSession()
    check(who.data.did === did && who.data.handle === handle, 'getSession after refresh', who.data)
  })

  if (jwtSecret) {
    // The agent's own recovery: an expired access token must come back as 400 ExpiredToken (or
    // 401), upon which the agent refreshes and retries by itself.
    await step('expiredAccessToken', async () => {
      const header = JSON.parse(Buffer.from(agent.session.accessJwt.split('.')[0], 'base64url').toString('utf8'))
      const now = Math.floor(Date.now() / 1000)
      const expired = signJwt(header, { ...decodeJwt(agent.session.accessJwt), iat: now - 7200, exp: now - 60 }, jwtSecret)
      const probe = new AtpAgent({ service })
      let refusal
      try {
        await probe.com.atproto.server.getSession(undefined, { headers: { authorization: `Bearer ${expired}` } })
      } catch (err) {
        refusal = { status: err.status, error: err.error }
      }
      check(refusal?.status === 400 && refusal?.error === 'ExpiredToken', 'an expired access token', refusal)
      const refreshBefore = agent.session.refreshJwt
      agent.sessionManager.session = { ...agent.session, accessJwt: expired }
      const who = await agent.com.atproto.server.getSession()
      check(who.data.did === did, 'getSession with an expired token', who.data)
      check(agent.session.refreshJwt !== refreshBefore, 'the agent did not refresh on ExpiredToken')
      return { refusal }
    })
  }

  const saved = JSON.parse(JSON.stringify(agent.session))
  let resumed
  await step('resumeSession', async () => {
    resumed = new AtpAgent({ service })
    await resumed.resumeSession(saved)
    check(resumed.hasSession && resumed.session.did === did, 'no session after resumeSession', resumed.session)
    check(resumed.session.refreshJwt !== saved.refreshJwt, 'resumeSession did not rotate the refresh token')
    const who = await resumed.com.atproto.server.getSession()
    check(who.data.did === did && who.data.handle === handle, 'getSession after resume', who.data)
  })

  await step('logout', async () => {
    const refreshJwt = resumed.session.refreshJwt
    await resumed.logout() // AtpAgent swallows deleteSession errors: check the token is dead instead.
    check(!resumed.hasSession, 'session kept after logout')
    const probe = new AtpAgent({ service })
    try {
      await probe.com.atproto.server.refreshSession(undefined, { headers: { authorization: `Bearer ${refreshJwt}` } })
    } catch (err) {
      check(err.status === 400 || err.status === 401, 'refresh after logout status', err.status)
      return { refreshAfterLogout: { status: err.status, error: err.error ?? null } }
    }
    throw new Error('the refresh token still works after logout')
  })

  summary.ok = true
  process.stdout.write(`${JSON.stringify(summary)}\n`)
  process.exit(0)
} catch (err) {
  const detail = {
    step: current,
    name: err?.name,
    message: err?.message,
    status: err?.status,
    error: err?.error,
    headers: err?.headers,
    cause: err?.cause ? String(err.cause) : undefined,
    stack: err?.stack,
  }
  summary.ok = false
  summary.failure = detail
  process.stdout.write(`${JSON.stringify(summary)}\n`)
  console.error(`agent.mjs: step ${current} failed: ${err?.name}: ${err?.message}`)
  console.error(JSON.stringify(detail, null, 2))
  process.exit(1)
}
