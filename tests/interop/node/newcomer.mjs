// A newcomer's first minute, judged by the reference clients: an account made by
// `pds admin account create` logs in with @atproto/api's AtpAgent, posts, and reads the post back
// (getRecord and listRecords); @atproto/identity resolves the DID through the PLC directory at
// PLC_URL (the server's embedded one when it runs on a local hostname with no PDS_DID_PLC_URL)
// to this server, its handle and the account's signing key, and an unknown DID to nothing.
// Env: PDS_URL, PDS_HANDLE, PDS_PASSWORD, PLC_URL.
// Prints a JSON summary as its last line; exits 1 naming the failing step.
import { AtpAgent } from '@atproto/api'
import { IdResolver } from '@atproto/identity'
import { check, requireEnv, runJudge } from './judge.mjs'

const [service, handle, password, plcUrl] = requireEnv('newcomer.mjs', 'PDS_URL', 'PDS_HANDLE', 'PDS_PASSWORD', 'PLC_URL')
// The default fetch refuses IP-address hosts; the PLC URL here is a loopback address.
const resolver = new IdResolver({ plcUrl, timeout: 5000, fetch: (input, init) => fetch(input, init) })
const samePort = (a, b) => new URL(a).port === new URL(b).port

await runJudge('newcomer.mjs', async (step) => {
  const agent = new AtpAgent({ service })
  let did
  await step('login', async () => {
    const res = await agent.login({ identifier: handle, password })
    did = res.data.did
    check(did.startsWith('did:plc:'), 'login.did', did)
    check(res.data.handle === handle, 'login.handle', res.data.handle)
    return { did }
  })

  const text = `hello from a fresh clone ${Date.now()}`
  let uri
  await step('post', async () => {
    const res = await agent.post({ text, createdAt: new Date().toISOString() })
    uri = res.uri
    check(uri.startsWith(`at://${did}/app.bsky.feed.post/`), 'post.uri', uri)
    return { uri }
  })

  await step('getRecord', async () => {
    const rkey = uri.split('/').pop()
    const res = await agent.com.atproto.repo.getRecord({ repo: did, collection: 'app.bsky.feed.post', rkey })
    check(res.data.value.text === text, 'getRecord.value.text', res.data.value)
  })

  await step('listRecords', async () => {
    const res = await agent.com.atproto.repo.listRecords({ repo: handle, collection: 'app.bsky.feed.post' })
    check(res.data.records.some((r) => r.uri === uri && r.value.text === text), 'listRecords has the post', res.data)
  })

  await step('did.resolveAtprotoData', async () => {
    const data = await resolver.did.resolveAtprotoData(did, true)
    check(data.did === did, 'atprotoData.did', data.did)
    check(data.handle === handle, 'atprotoData.handle', data.handle)
    check(samePort(data.pds, service), 'atprotoData.pds names this PDS', data.pds)
    check(data.signingKey?.startsWith('did:key:z'), 'atprotoData.signingKey', data.signingKey)
    return { pds: data.pds }
  })

  await step('did.resolve(unknown)', async () => {
    const doc = await resolver.did.resolve('did:plc:' + 'b'.repeat(24), true)
    check(doc === null, 'an unknown DID resolved', doc)
  })
})
