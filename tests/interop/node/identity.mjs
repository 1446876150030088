// @atproto/identity judges our identity surface: the DID of a new account resolved through the
// reference PLC directory (document, handle, PDS endpoint, signing key), and the handle resolved
// back to that DID through our `/.well-known/atproto-did` (HTTP handle resolution; the handle's
// host has no DNS here, so `handleFetch` sends that one request to our server with
// `Host: <handle>`). With PDS_ADMIN_PASSWORD: the handle changed by admin updateAccountHandle,
// and both directions resolve the new handle (the old one no longer).
// Env: PDS_URL, PLC_URL, [PDS_HANDLE_DOMAIN=.test], [PDS_ADMIN_PASSWORD].
// Prints a JSON summary as its last line; exits 1 naming the failing step.
import { randomBytes } from 'node:crypto'
import { AtpAgent } from '@atproto/api'
import { IdResolver } from '@atproto/identity'
import { check, handleFetch, requireEnv, runJudge } from './judge.mjs'

const [service, plcUrl] = requireEnv('identity.mjs', 'PDS_URL', 'PLC_URL')
const domain = process.env.PDS_HANDLE_DOMAIN ?? '.test'
const adminPassword = process.env.PDS_ADMIN_PASSWORD
const resolver = new IdResolver({ plcUrl, timeout: 5000, fetch: handleFetch(service, domain) })
const samePort = (a, b) => new URL(a).port === new URL(b).port

await runJudge('identity.mjs', async (step) => {
  const suffix = randomBytes(5).toString('hex')
  let handle = `id${suffix}${domain}`
  const agent = new AtpAgent({ service })
  let did

  await step('createAccount', async () => {
    const res = await agent.createAccount({ handle, email: `id${suffix}@example.com`, password: `pw-${suffix}` })
    did = res.data.did
    check(did.startsWith('did:plc:'), 'createAccount.did', did)
    return { did }
  })

  let signingKey
  await step('did.resolve', async () => {
    const doc = await resolver.did.resolve(did)
    check(doc?.id === did, 'didDoc.id', doc)
    check(doc.alsoKnownAs?.includes(`at://${handle}`), 'didDoc.alsoKnownAs', doc.alsoKnownAs)
    const pds = doc.service?.find((s) => s.id === '#atproto_pds' || s.id === `${did}#atproto_pds`)
    check(pds?.type === 'AtprotoPersonalDataServer', 'didDoc #atproto_pds service', doc.service)
    return { pds: pds.serviceEndpoint }
  })

  await step('did.resolveAtprotoData', async () => {
    const data = await resolver.did.resolveAtprotoData(did)
    check(data.did === did, 'atprotoData.did', data.did)
    check(data.handle === handle, 'atprotoData.handle', data.handle)
    check(samePort(data.pds, service), 'atprotoData.pds names this PDS', data.pds)
    check(data.signingKey?.startsWith('did:key:z'), 'atprotoData.signingKey', data.signingKey)
    signingKey = data.signingKey
    return { signingKey }
  })

  await step('did.resolveAtprotoKey', async () => {
    const key = await resolver.did.resolveAtprotoKey(did, true)
    check(key === signingKey, 'resolveAtprotoKey', key)
  })

  await step('did.resolve(unknown)', async () => {
    const unknown = 'did:plc:' + 'a'.repeat(24)
    const doc = await resolver.did.resolve(unknown)
    check(doc === null, 'an unknown DID resolved', doc)
  })

  await step('handle.resolve', async () => {
    const got = await resolver.handle.resolve(handle)
    check(got === did, 'handle.resolve', got)
  })

  await step('handle.resolve(unknown)', async () => {
    const got = await resolver.handle.resolve(`nobody${suffix}${domain}`)
    check(got === undefined, 'an unknown handle resolved', got)
  })

  if (adminPassword) {
    await step('admin.updateAccountHandle', async () => {
      const next = `id${suffix}b${domain}`
      const admin = new AtpAgent({ service })
      await admin.com.atproto.admin.updateAccountHandle(
        { did, handle: next },
        { headers: { authorization: `Basic ${Buffer.from(`admin:${adminPassword}`).toString('base64')}` } },
      )
      const data = await resolver.did.resolveAtprotoData(did, true)
      check(data.handle === next, 'the directory serves the new handle', data.handle)
      check((await resolver.handle.resolve(next)) === did, 'the new handle resolves to the DID')
      check((await resolver.handle.resolve(handle)) === undefined, 'the old handle still resolves')
      handle = next
      return { handle }
    })
  }
})
