// The real tus 1.0.0 server for the tests and the bench: @tus/server + @tus/file-store.
// node tus_server.mjs MODULES_DIR STORE_DIR [MAX_SIZE] [EXPIRE_MS]; prints "listening PORT".
// @tus/file-store has no checksum extension (tus 1.0.0, "Checksum"), so this adds it: a PATCH
// with Upload-Checksum is read whole, hashed, and answered 460 on a mismatch (tests send small
// chunks when they ask for a checksum); every other request goes to the server as it is.
import http from 'node:http';
import crypto from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const [modules, directory, maxSize, expireMs] = process.argv.slice(2);
const load = (name) => import(pathToFileURL(join(modules, name, 'dist', 'index.js')).href);
const { Server } = await load('@tus/server');
const { FileStore } = await load('@tus/file-store');
const datastore = new FileStore({ directory, expirationPeriodInMilliseconds: Number(expireMs || 0) });
const tus = new Server({ path: '/files', datastore, maxSize: Number(maxSize || 0) || undefined });
const ALGORITHMS = ['sha1', 'md5', 'sha256'];

async function viaWeb(req, res, body, check) {
  const url = `http://${req.headers.host}${req.url}`;
  const request = new Request(url, { method: req.method, headers: req.headers, body });
  const answer = check ?? (await tus.handleWeb(request));
  if (req.method === 'OPTIONS') {
    answer.headers.set('Tus-Extension', `${answer.headers.get('Tus-Extension')},checksum`);
    answer.headers.set('Tus-Checksum-Algorithm', ALGORITHMS.join(','));
  }
  res.writeHead(answer.status, Object.fromEntries(answer.headers));
  res.end(Buffer.from(await answer.arrayBuffer()));
}

function checksumFailure(header, body) {
  const [algorithm, expected] = header.split(' ');
  if (!ALGORITHMS.includes(algorithm)) return new Response('bad checksum algorithm\n', { status: 400 });
  const actual = crypto.createHash(algorithm).update(body).digest('base64');
  if (actual === expected) return null;
  return new Response('checksum mismatch\n', { status: 460, headers: { 'Tus-Resumable': '1.0.0' } });
}

const server = http.createServer(async (req, res) => {
  const header = req.headers['upload-checksum'];
  if (req.method === 'OPTIONS') return viaWeb(req, res, undefined);
  if (req.method !== 'PATCH' || !header) return tus.handle(req, res);
  const parts = [];
  for await (const part of req) parts.push(part);
  const body = Buffer.concat(parts);
  return viaWeb(req, res, body, checksumFailure(header, body) ?? undefined);
});
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
