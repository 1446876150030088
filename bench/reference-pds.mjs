// Starts the reference PDS (@atproto/pds) from the cache folder bench/reference-install filled;
// bench/run copies this file there so `@atproto/pds` resolves. Configuration is the reference's
// own PDS_* environment (bench/run sets dev settings on loopback), exactly as its distribution's
// entry point reads it. Exits when stdin closes or on SIGTERM/SIGINT.
import { PDS, envToCfg, envToSecrets, readEnv } from '@atproto/pds'

const env = readEnv()
const pds = await PDS.create(envToCfg(env), envToSecrets(env))
await pds.start()
const stop = async () => {
  await pds.destroy()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.stdin.on('end', stop)
process.stdin.resume()
console.log(`reference PDS listening on ${env.port}`)
