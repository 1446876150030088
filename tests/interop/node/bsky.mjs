// The Bluesky app's client (@atproto/api's AtpAgent, the Agent the app is built on) judging what
// the PDS answers for it: preferences through the agent's own helpers (getPreferences,
// setAdultContentEnabled — a read-modify-write of the whole app.bsky namespace), upsertProfile
// (getRecord + putRecord with swapRecord, twice: create then update), and — when APPVIEW_URL
// names the canned AppView the PDS is configured with (tests/interop/upstream/appview.mjs) — a
// post read back at once through getTimeline (read-after-write: the AppView's answer is older
// than the post) and the new profile through getProfile. The agent validates every response
// against the lexicons.
//
// Usage: PDS_URL=http://127.0.0.1:PORT [APPVIEW_URL=http://127.0.0.1:N] node bsky.mjs
// Exit 0 with a JSON summary on stdout; otherwise exit 1 with the failing step.
import { randomBytes } from 'node:crypto'
import { AtpAgent } from '@atproto/api'

const service = process.env.PDS_URL
if (!service) {
  console.error('bsky.mjs: set PDS_URL')
  process.exit(2)
}
const appview = process.env.APPVIEW_URL
const domain = process.env.PDS_HANDLE_DOMAIN ?? '.test'
const summary = { service, appview: appview ?? null, steps: [] }
let current = 'start'

function check(cond, what, got) {
  if (!cond) throw new Error(`${what}${got === undefined ? '' : `: got ${JSON.stringify(got)}`}`)
}

async function step(name, fn) {
  current = name
  const started = performance.now()
  const detail = await fn()
  summary.steps.push({ step: name, ms: Math.round(performance.now() - started), ...(detail ?? {}) })
}

async function control(update) {
  const res = await fetch(`${appview}/_control`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(update),
  })
  check(res.ok, `canned AppView control: ${res.status}`)
}

try {
  const suffix = randomBytes(5).toString('hex')
  const handle = `bsky${suffix}${domain}`
  const agent = new AtpAgent({ service })
  await step('createAccount', async () => {
    await agent.createAccount({ handle, email: `bsky${suffix}@example.com`, password: `pw-${suffix}` })
    check(agent.session?.did, 'no session after createAccount')
  })
  const did = agent.session.did

  await step('getPreferences (none yet)', async () => {
    const prefs = await agent.getPreferences()
    check(prefs.moderationPrefs.adultContentEnabled === false, 'adultContentEnabled by default', prefs.moderationPrefs)
    // The agent itself stores its default saved feeds on the first read; nothing else is there.
    const raw = await agent.app.bsky.actor.getPreferences()
    const types = raw.data.preferences.map((p) => p.$type)
    check(types.every((t) => t === 'app.bsky.actor.defs#savedFeedsPrefV2'), 'only the default saved feeds', types)
  })

  await step('setAdultContentEnabled', async () => {
    await agent.setAdultContentEnabled(true)
    let prefs = await agent.getPreferences()
    check(prefs.moderationPrefs.adultContentEnabled === true, 'adultContentEnabled after enabling', prefs.moderationPrefs)
    await agent.setContentLabelPref('porn', 'warn')
    await agent.setAdultContentEnabled(false)
    prefs = await agent.getPreferences()
    check(prefs.moderationPrefs.adultContentEnabled === false, 'adultContentEnabled after disabling', prefs.moderationPrefs)
    check(prefs.moderationPrefs.labels.porn === 'warn', 'the other preference kept', prefs.moderationPrefs.labels)
  })

  await step('upsertProfile', async () => {
    await agent.upsertProfile((existing) => ({ ...existing, displayName: 'Judge' }))
    await agent.upsertProfile((existing) => ({ ...existing, description: 'judging' }))
    const rec = await agent.com.atproto.repo.getRecord({ repo: did, collection: 'app.bsky.actor.profile', rkey: 'self' })
    check(rec.data.value.displayName === 'Judge' && rec.data.value.description === 'judging', 'profile record', rec.data.value)
  })

  if (appview) {
    let postUri
    await step('post after the AppView caught up', async () => {
      // A record the AppView has seen (a repo whose every record is newer than the AppView's rev
      // looks like a migration: nothing is merged, as the reference does).
      await agent.post({ text: 'seen by the AppView', createdAt: new Date().toISOString() })
      const head = await agent.com.atproto.sync.getLatestCommit({ did })
      await control({
        rev: head.data.rev,
        answers: {
          'app.bsky.feed.getTimeline': { body: { feed: [] } },
          'app.bsky.actor.getProfile': { body: { did, handle, displayName: 'Old name' } },
        },
      })
      postUri = (await agent.post({ text: 'hello from the judge', createdAt: new Date().toISOString() })).uri
      await agent.upsertProfile((existing) => ({ ...existing, displayName: 'Judge 2' }))
    })
    await step('getTimeline (read-after-write)', async () => {
      const res = await agent.getTimeline({ limit: 10 })
      check(res.data.feed[0]?.post.uri === postUri, 'the new post on top', res.data.feed.map((i) => i.post.uri))
      check(res.data.feed[0].post.author.displayName === 'Judge 2', 'author view from the new profile', res.data.feed[0].post.author)
      check(Number(res.headers['atproto-upstream-lag']) >= 0, 'atproto-upstream-lag', res.headers['atproto-upstream-lag'])
    })
    await step('getProfile (read-after-write)', async () => {
      const res = await agent.getProfile({ actor: did })
      check(res.data.displayName === 'Judge 2' && res.data.description === 'judging', 'the new profile', res.data)
    })
  }

  summary.ok = true
  console.log(JSON.stringify(summary))
} catch (err) {
  summary.ok = false
  summary.failure = { step: current, message: String(err?.message ?? err).split('\n')[0] }
  console.log(JSON.stringify(summary))
  console.error(`bsky.mjs: step ${current}: ${err?.stack ?? err}`)
  process.exit(1)
}
