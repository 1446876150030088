// Shared by the judges written after agent.mjs/sync.mjs (identity.mjs, firehose.mjs): named steps,
// a JSON summary as the last stdout line ({ok, steps: [{step, ms, ...}], failure: {step, ...}}),
// exit 1 naming the failing step; and the loopback stand-ins a judge needs for the parts of the
// network that do not exist here.
import http from 'node:http'

export function check(cond, what, got) {
  if (!cond) throw new Error(`${what}${got === undefined ? '' : `: got ${JSON.stringify(got, bigints)}`}`)
}

const bigints = (_k, v) => (typeof v === 'bigint' ? v.toString() : v)

/** Runs `body(step)`; `step(name, fn)` times and records one named step. Never returns. */
export async function runJudge(script, body) {
  const summary = { script, ok: false, steps: [] }
  let current = 'start'
  const step = async (name, fn) => {
    current = name
    const started = performance.now()
    const detail = await fn()
    summary.steps.push({ step: name, ms: Math.round(performance.now() - started), ...(detail ?? {}) })
    return detail
  }
  try {
    await body(step)
    summary.ok = true
    process.stdout.write(`${JSON.stringify(summary, bigints)}\n`)
    process.exit(0)
  } catch (err) {
    summary.failure = {
      step: current,
      name: err?.name,
      message: err?.message,
      status: err?.status,
      error: err?.error,
      cause: err?.cause ? String(err.cause) : undefined,
    }
    process.stdout.write(`${JSON.stringify(summary, bigints)}\n`)
    console.error(`${script}: step ${current} failed: ${err?.name}: ${err?.message}`)
    console.error(err?.stack)
    process.exit(1)
  }
}

export function requireEnv(script, ...names) {
  const missing = names.filter((n) => !process.env[n])
  if (missing.length) {
    console.error(`${script}: set ${missing.join(', ')}`)
    process.exit(2)
  }
  return names.map((n) => process.env[n])
}

/**
 * A `fetch` for @atproto/identity that serves `https://<handle>/.well-known/atproto-did` for
 * handles under `domain` from our PDS (its real handle-resolution route, with `Host: <handle>`),
 * since `<handle>` has no DNS or TLS here; every other URL goes to the real fetch.
 */
export function handleFetch(pdsUrl, domain) {
  const pds = new URL(pdsUrl)
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input))
    if (url.protocol !== 'https:' || !url.hostname.endsWith(domain) || url.pathname !== '/.well-known/atproto-did') {
      return fetch(input, init)
    }
    const { status, body } = await new Promise((resolve, reject) => {
      const req = http.get(
        { host: pds.hostname, port: pds.port, path: url.pathname, headers: { host: url.hostname }, signal: init?.signal },
        (res) => {
          const chunks = []
          res.on('data', (c) => chunks.push(c))
          res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }))
          res.on('error', reject)
        },
      )
      req.on('error', reject)
    })
    return new Response(body, { status, headers: { 'content-type': 'text/plain' } })
  }
}
