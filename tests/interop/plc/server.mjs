// The reference PLC directory (@did-plc/server) with its in-memory database, for the tests.
//
// Usage: node server.mjs [PORT]    (or PLC_PORT=PORT; 0 or unset = any free port;
//        PLC_HOST=ADDR to listen elsewhere than 127.0.0.1)
// Prints exactly one line `PLC_URL=http://127.0.0.1:PORT` on stdout once it accepts requests.
// Exits when stdin closes (the parent test process died or dropped its handle), on SIGTERM or
// on SIGINT. Nothing is written to disk: every start is an empty directory.
import { once } from 'node:events'
import plcServer from '@did-plc/server'

const { PlcServer, Database } = plcServer

const arg = process.argv[2] ?? process.env.PLC_PORT ?? '0'
const port = Number.parseInt(arg, 10)
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`server.mjs: expected a port number (0 = any free port), got ${JSON.stringify(arg)}`)
  process.exit(2)
}

const host = process.env.PLC_HOST ?? '127.0.0.1'
const server = PlcServer.create({ db: Database.mock(), port, version: 'interop' })
// PlcServer.start() listens on every interface; tests only need loopback.
const http = server.app.listen(port, host)
await once(http, 'listening')
const { port: bound } = http.address()

// The database is memory: there is nothing to flush, so stopping is exiting.
const stop = () => process.exit(0)
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.stdin.on('end', stop)
process.stdin.on('close', stop)
process.stdin.resume()

const shown = host.includes(':') ? `[${host}]` : host
process.stdout.write(`PLC_URL=http://${shown}:${bound}\n`)
