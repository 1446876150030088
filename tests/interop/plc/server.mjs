// The reference PLC directory (@did-plc/server) with its in-memory database, for the tests.
//
// Usage: node server.mjs [PORT]    (or PLC_PORT=PORT; 0 or unset = any free port)
// Prints exactly one line `PLC_URL=http://127.0.0.1:PORT` on stdout once it accepts requests.
// Exits when stdin closes (the parent test process died or dropped its handle), on SIGTERM or
// on SIGINT. Nothing is written to disk: every start is an empty directory.
import plcServer from '@did-plc/server'

const { PlcServer, Database } = plcServer

const arg = process.argv[2] ?? process.env.PLC_PORT ?? '0'
const port = Number.parseInt(arg, 10)
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`server.mjs: expected a port number (0 = any free port), got ${JSON.stringify(arg)}`)
  process.exit(2)
}

const server = PlcServer.create({ db: Database.mock(), port, version: 'interop' })
const http = await server.start()
const { port: bound } = http.address()

let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
  try {
    await server.destroy()
  } finally {
    process.exit(0)
  }
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.stdin.on('end', stop)
process.stdin.on('close', stop)
process.stdin.resume()

process.stdout.write(`PLC_URL=http://127.0.0.1:${bound}\n`)
