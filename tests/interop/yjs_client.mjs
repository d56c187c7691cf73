// A stock Yjs client (y-websocket's WebsocketProvider under Node.js) joining a krill_crdt host
// doc over /ws/{doc}.
//
// Usage: node yjs_client.mjs SERVER_URL DOC WRITE_ID WAIT_ID TIMEOUT_MS [TOKEN]
//
// It waits until the provider reports `synced`, prints every node it sees, writes a Project
// node WRITE_ID under the doc's Server node (as a nested Y.Map with the fields a host doc
// stores), then waits until node WAIT_ID appears (written by the server after it), prints it
// and exits 0. Every step is one JSON object per line on stdout. Any failure, a close by the
// server or the timeout exits 1 with an {"event": "error"} line.

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const [serverUrl, room, writeId, waitId, timeoutText, token] = process.argv.slice(2)
if (!serverUrl || !room || !writeId || !waitId || !timeoutText) {
  console.error('usage: node yjs_client.mjs SERVER_URL DOC WRITE_ID WAIT_ID TIMEOUT_MS [TOKEN]')
  process.exit(2)
}

const emit = (event, data = {}) => {
  process.stdout.write(JSON.stringify({ event, ...data }) + '\n')
}

const finish = (code, event, data) => {
  emit(event, data)
  // The provider and awareness keep interval timers alive: leave explicitly.
  process.exit(code)
}

const deadline = setTimeout(
  () => finish(1, 'error', { message: `timed out after ${timeoutText} ms` }),
  Number(timeoutText)
)
deadline.unref()

const doc = new Y.Doc()
const nodes = doc.getMap('nodes')
const provider = new WebsocketProvider(serverUrl, room, doc, {
  WebSocketPolyfill: WebSocket,
  disableBc: true,
  params: token ? { token } : {}
})

provider.on('closed', ({ code, reason }) => {
  finish(1, 'error', { message: `server closed the connection for good: ${code} ${reason}` })
})
provider.on('connection-error', () => emit('connection-error'))

const fieldsOf = (id) => {
  const entry = nodes.get(id)
  return entry instanceof Y.Map ? entry.toJSON() : null
}

let wrote = false

const lookForAnswer = () => {
  if (!wrote) return
  const node = fieldsOf(waitId)
  // The whole node arrives in one transaction; checking the id also covers a half-read map.
  if (node !== null && node.id === waitId) {
    provider.destroy()
    finish(0, 'seen', { node })
  }
}

provider.on('synced', (synced) => {
  if (!synced || wrote) return
  emit('synced')

  // Step 1: report what the server sent.
  let server = null
  for (const id of Array.from(nodes.keys()).sort()) {
    const node = fieldsOf(id)
    emit('node', { node })
    if (node !== null && node.type === 'Server' && server === null) server = node
  }
  if (server === null) {
    finish(1, 'error', { message: 'no Server node in the doc' })
    return
  }

  // Step 2: write a Project under the Server, one field per map entry, in one transaction.
  const fields = {
    id: writeId,
    parent: server.id,
    host: server.host,
    type: 'Project',
    name: 'written by yjs',
    state: 'none',
    meta: { description: 'created by a stock Yjs client' },
    updated: Date.now() / 1000,
    schema: server.schema
  }
  doc.transact(() => {
    const entry = new Y.Map()
    nodes.set(writeId, entry)
    for (const [key, value] of Object.entries(fields)) entry.set(key, value)
  })
  wrote = true
  emit('wrote', { node: fieldsOf(writeId) })
  lookForAnswer()
})

doc.on('update', lookForAnswer)
