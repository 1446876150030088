// @atproto/sync's `Firehose` judges our `com.atproto.sync.subscribeRepos`: with authentication on
// (every #commit's ops proven by `verifyProofs` against the signing key the PLC directory serves,
// #identity handles verified both ways through @atproto/identity, every frame validated against
// the lexicon), it must deliver every event of a scripted session driven by @atproto/api's
// AtpAgent: create account, post, like, follow, put (create then update), delete, applyWrites
// (create + update + delete in one commit). Each delivered event is matched against what the
// write returned (uri, cid, commit cid, rev, record content); a proof that fails, a frame that
// fails validation or an event that never arrives fails the judge.
// The subscription starts at cursor 0 (so no event can be missed to a connection race) and stays
// open while the session writes, so both backfill and live delivery are exercised.
// Env: PDS_URL, PLC_URL, [PDS_HANDLE_DOMAIN=.test], [FIREHOSE_WAIT_MS=20000].
// Prints a JSON summary as its last line; exits 1 naming the failing step.
import { randomBytes } from 'node:crypto'
import { AtpAgent } from '@atproto/api'
import { IdResolver } from '@atproto/identity'
import { Firehose } from '@atproto/sync'
import { check, handleFetch, requireEnv, runJudge } from './judge.mjs'

const [service, plcUrl] = requireEnv('firehose.mjs', 'PDS_URL', 'PLC_URL')
const domain = process.env.PDS_HANDLE_DOMAIN ?? '.test'
const waitMs = Number(process.env.FIREHOSE_WAIT_MS ?? 20000)
const idResolver = new IdResolver({ plcUrl, timeout: 5000, fetch: handleFetch(service, domain) })

const received = [] // every event the Firehose handed us, in order
const errors = [] // every error it reported (validation, proof, subscription, handler)
let wake = () => {}
const firehose = new Firehose({
  idResolver,
  service: service.replace(/^http/, 'ws'),
  getCursor: () => 0,
  subscriptionReconnectDelay: 200,
  handleEvent: (evt) => {
    received.push(evt)
    wake()
  },
  onError: (err) => {
    errors.push(err)
    wake()
  },
})

// JSON with object keys sorted (records come back in DAG-CBOR key order), CIDs as strings.
const stable = (v) =>
  JSON.stringify(v, (_k, x) =>
    x && typeof x === 'object' && !Array.isArray(x) && x.constructor === Object
      ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, x[k]]))
      : x)
const describeError = (e) => `${e.name}: ${e.message}${e.cause ? ` (cause: ${e.cause?.message ?? e.cause})` : ''}`

await runJudge('firehose.mjs', async (step) => {
  const running = firehose.start()
  try {
    await session(step)
  } finally {
    await firehose.destroy()
    await running
  }
})

async function session(step) {
  const suffix = randomBytes(5).toString('hex')
  const handle = `fh${suffix}${domain}`
  const agent = new AtpAgent({ service })
  const expected = [] // {name, match(evt) -> bool, verify(evt)}
  let did

  const expectOp = (name, action, uri, cid, commit, record) =>
    expected.push({
      name,
      match: (e) => e.event === action && e.uri.toString() === uri && e.commit.toString() === commit.cid,
      verify: (e) => {
        check(e.did === did, `${name}: did`, e.did)
        if (action !== 'delete') {
          check(e.cid.toString() === cid, `${name}: cid`, e.cid.toString())
          for (const [k, v] of Object.entries(record)) {
            check(stable(e.record[k]) === stable(v), `${name}: record.${k}`, e.record[k])
          }
        }
        check(e.rev === commit.rev, `${name}: rev`, e.rev)
      },
    })

  await step('createAccount', async () => {
    const res = await agent.createAccount({ handle, email: `fh${suffix}@example.com`, password: `pw-${suffix}` })
    did = res.data.did
    check(did.startsWith('did:plc:'), 'createAccount.did', did)
    const latest = await agent.com.atproto.sync.getLatestCommit({ did })
    expected.push({
      name: '#identity',
      match: (e) => e.event === 'identity' && e.did === did,
      verify: (e) => {
        check(e.handle === handle, '#identity: handle verified through the DID document and back', e.handle)
        check(e.didDocument?.id === did, '#identity: DID document', e.didDocument?.id)
      },
    })
    expected.push({
      name: '#account',
      match: (e) => e.event === 'account' && e.did === did,
      verify: (e) => check(e.active === true && e.status === undefined, '#account: active', { active: e.active, status: e.status }),
    })
    expected.push({
      name: '#sync',
      match: (e) => e.event === 'sync' && e.did === did,
      verify: (e) => {
        check(e.cid.toString() === latest.data.cid, '#sync: commit cid', e.cid.toString())
        check(e.rev === latest.data.rev, '#sync: rev', e.rev)
        check(e.blocks.has(e.cid), '#sync: the commit block is in blocks')
      },
    })
    return { did }
  })

  const now = () => new Date().toISOString()
  let post, like, follow
  await step('post', async () => {
    const record = { text: `firehose judge ${suffix}`, createdAt: now() }
    const res = await agent.com.atproto.repo.createRecord({ repo: did, collection: 'app.bsky.feed.post', record })
    post = res.data
    expectOp('post', 'create', post.uri, post.cid, post.commit, { text: record.text })
  })
  await step('like', async () => {
    const record = { subject: { uri: post.uri, cid: post.cid }, createdAt: now() }
    const res = await agent.com.atproto.repo.createRecord({ repo: did, collection: 'app.bsky.feed.like', record })
    like = res.data
    expectOp('like', 'create', like.uri, like.cid, like.commit, { subject: record.subject })
  })
  await step('follow', async () => {
    const record = { subject: 'did:plc:' + 'b'.repeat(24), createdAt: now() }
    const res = await agent.com.atproto.repo.createRecord({ repo: did, collection: 'app.bsky.graph.follow', record })
    follow = res.data
    expectOp('follow', 'create', follow.uri, follow.cid, follow.commit, { subject: record.subject })
  })
  const profileUri = `at://${did}/app.bsky.actor.profile/self`
  await step('putRecord(create)', async () => {
    const record = { displayName: 'Judge' }
    const res = await agent.com.atproto.repo.putRecord({ repo: did, collection: 'app.bsky.actor.profile', rkey: 'self', record })
    check(res.data.uri === profileUri, 'putRecord.uri', res.data.uri)
    expectOp('putRecord(create)', 'create', res.data.uri, res.data.cid, res.data.commit, record)
  })
  await step('putRecord(update)', async () => {
    const record = { displayName: 'Judge, updated', description: 'second put' }
    const res = await agent.com.atproto.repo.putRecord({ repo: did, collection: 'app.bsky.actor.profile', rkey: 'self', record })
    expectOp('putRecord(update)', 'update', res.data.uri, res.data.cid, res.data.commit, record)
  })
  await step('deleteRecord', async () => {
    const rkey = like.uri.split('/').pop()
    const res = await agent.com.atproto.repo.deleteRecord({ repo: did, collection: 'app.bsky.feed.like', rkey })
    check(res.data.commit?.cid, 'deleteRecord.commit', res.data)
    expectOp('deleteRecord', 'delete', like.uri, null, res.data.commit)
  })
  await step('applyWrites', async () => {
    const created = { $type: 'app.bsky.feed.post', text: `batched ${suffix}`, createdAt: now() }
    const updated = { $type: 'app.bsky.actor.profile', displayName: 'Judge, batched' }
    const res = await agent.com.atproto.repo.applyWrites({
      repo: did,
      writes: [
        { $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.post', value: created },
        { $type: 'com.atproto.repo.applyWrites#update', collection: 'app.bsky.actor.profile', rkey: 'self', value: updated },
        { $type: 'com.atproto.repo.applyWrites#delete', collection: 'app.bsky.graph.follow', rkey: follow.uri.split('/').pop() },
      ],
    })
    const { commit, results } = res.data
    check(commit?.cid && results?.length === 3, 'applyWrites response', res.data)
    expectOp('applyWrites#create', 'create', results[0].uri, results[0].cid, commit, { text: created.text })
    expectOp('applyWrites#update', 'update', results[1].uri, results[1].cid, commit, { displayName: updated.displayName })
    expectOp('applyWrites#delete', 'delete', follow.uri, null, commit)
  })

  // Every expected event, delivered and authenticated.
  const found = new Map()
  await step('delivery', async () => {
    const deadline = Date.now() + waitMs
    for (;;) {
      if (errors.length) throw new Error(`the firehose reported ${errors.length} error(s): ${errors.map(describeError).join('; ')}`)
      for (const exp of expected) {
        if (!found.has(exp.name)) {
          const evt = received.find(exp.match)
          if (evt) found.set(exp.name, evt)
        }
      }
      if (found.size === expected.length || Date.now() > deadline) break
      await new Promise((resolve) => {
        wake = resolve
        setTimeout(resolve, 200)
      })
    }
    return { received: received.length }
  })
  for (const exp of expected) {
    await step(`event ${exp.name}`, async () => {
      const evt = found.get(exp.name)
      check(evt, `no ${exp.name} event within ${waitMs} ms (received ${received.filter((e) => e.did === did).map((e) => `${e.event}:${e.collection ?? ''}`).join(', ')})`)
      exp.verify(evt)
      return { seq: evt.seq }
    })
  }
  await step('event order', async () => {
    const seqs = expected.map((e) => found.get(e.name).seq)
    // #identity, #account and #sync come from one atomic append, then one commit per write; the
    // three ops of applyWrites share one seq.
    for (let i = 1; i < seqs.length; i++) {
      const same = expected[i].name.startsWith('applyWrites#') && expected[i - 1].name.startsWith('applyWrites#')
      check(same ? seqs[i] === seqs[i - 1] : seqs[i] > seqs[i - 1], `seq of ${expected[i].name} after ${expected[i - 1].name}`, seqs)
    }
    const mine = received.filter((e) => e.did === did)
    check(mine.length === expected.length, 'events of this account beyond the expected ones', mine.map((e) => `${e.event}:${e.uri ?? ''}`))
    return { seqs }
  })
}
