// Prints known did:plc vectors made by the reference library (@did-plc/lib), for the constants
// in domain/src/plc.rs's tests. secp256k1 signing there is RFC 6979 deterministic, as ours is,
// so the signatures, CIDs and DIDs must match byte for byte.
//
// Usage: "$(scripts/plc-install)" tests/interop/plc/vectors.mjs
import plcLib from '@did-plc/lib'
import crypto from '@atproto/crypto'
import common from '@atproto/common'
import { CID } from 'multiformats/cid'

const rotation = await crypto.Secp256k1Keypair.import('11'.repeat(32))
const signing = await crypto.Secp256k1Keypair.import('22'.repeat(32))

const { op: genesis, did } = await plcLib.createOp({
  signingKey: signing.did(),
  handle: 'alice.test',
  pds: 'https://example.test',
  rotationKeys: [rotation.did()],
  signer: rotation,
})
const genesisCid = await common.cidForCbor(genesis)
const update = await plcLib.updateHandleOp(genesis, rotation, 'bob.test')
const updateCid = await common.cidForCbor(update)
const tombstone = await plcLib.tombstoneOp(CID.parse(updateCid.toString()), rotation)

console.log(JSON.stringify({
  rotationPrivateHex: '11'.repeat(32),
  rotationDidKey: rotation.did(),
  signingPrivateHex: '22'.repeat(32),
  signingDidKey: signing.did(),
  genesis,
  genesisCid: genesisCid.toString(),
  did,
  update,
  updateCid: updateCid.toString(),
  tombstone,
  tombstoneCid: (await common.cidForCbor(tombstone)).toString(),
  didDoc: await plcLib.formatDidDoc({ did, ...plcLib.normalizeOp(update) }),
}, null, 2))
