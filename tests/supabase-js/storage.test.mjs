// Storage (`supabase.storage`) as an app calls it, against `/storage/v1`. Demo buckets
// (docs/storage.md): `documents` is private, read by a chama's members under `<chama id>/...`
// and written by its officials; `avatars` is public, a user writes under `<their id>/...`.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { StorageApiError } from '@supabase/supabase-js';
import { client, demo, serviceKey, signedIn, unique } from './helpers.mjs';

let official; // Wanjiku, chairperson of Umoja
let member; // Nafula, a plain member of Umoja
let outsider; // Otieno, not in Umoja
before(async () => {
  [official, member, outsider] = await Promise.all([signedIn(demo.wanjiku), signedIn(demo.nafula), signedIn(demo.otieno)]);
});

const text = 'Minutes of the Umoja meeting: KES 12,000 collected.\n';

/** A fresh object in Umoja's documents, uploaded by its chairperson. */
async function uploadMinutes(body = new Blob([text], { type: 'text/plain' }), options = {}) {
  const path = `${demo.umoja}/js-${unique()}.txt`;
  const { data, error } = await official.supabase.storage.from('documents').upload(path, body, options);
  assert.equal(error, null, `upload: ${error?.message}`);
  return { path, data };
}

test('upload a Blob (multipart), then download it as a member', async () => {
  const { path, data } = await uploadMinutes();
  assert.equal(data.path, path);
  assert.equal(data.fullPath, `documents/${path}`);
  assert.ok(data.id, 'the object id');

  const download = await member.supabase.storage.from('documents').download(path);
  assert.equal(download.error, null);
  assert.ok(download.data instanceof Blob);
  assert.equal(await download.data.text(), text);
  assert.match(download.data.type, /^text\/plain/);
});

test('upload a Buffer (raw body) with a content type and metadata; info() reads them back', async () => {
  const body = Buffer.from('%PDF-1.4 not really a pdf');
  const { path } = await uploadMinutes(body, {
    contentType: 'application/pdf',
    cacheControl: '120',
    metadata: { meeting: 'march' },
  });
  const { data, error } = await member.supabase.storage.from('documents').info(path);
  assert.equal(error, null, `info: ${error?.message}`);
  assert.equal(data.name, path);
  assert.equal(data.bucketId, 'documents');
  assert.equal(data.size, body.length);
  assert.equal(data.contentType, 'application/pdf');
  assert.equal(data.cacheControl, 'max-age=120');
  assert.deepEqual(data.metadata, { meeting: 'march' });
  assert.ok(data.etag);
  assert.ok(!Number.isNaN(Date.parse(data.lastModified)));
});

test('upload with upsert replaces the object; without it a second upload is refused (409)', async () => {
  const { path } = await uploadMinutes();
  const again = await official.supabase.storage.from('documents').upload(path, new Blob(['second'], { type: 'text/plain' }));
  assert.ok(again.error instanceof StorageApiError, `a StorageApiError, got ${again.error}`);
  assert.equal(again.error.status, 409);
  assert.equal(again.error.statusCode, '409');

  const upsert = await official.supabase.storage.from('documents').upload(path, new Blob(['third'], { type: 'text/plain' }), { upsert: true });
  assert.equal(upsert.error, null);
  const download = await member.supabase.storage.from('documents').download(path);
  assert.equal(await download.data.text(), 'third');

  // update() replaces too (PUT)
  const update = await official.supabase.storage.from('documents').update(path, Buffer.from('fourth'), { contentType: 'text/plain' });
  assert.equal(update.error, null);
  assert.equal(await (await member.supabase.storage.from('documents').download(path)).data.text(), 'fourth');
});

test('exists() is true for an object a member may read, false for a missing one', async () => {
  const { path } = await uploadMinutes();
  const yes = await member.supabase.storage.from('documents').exists(path);
  assert.equal(yes.error, null);
  assert.equal(yes.data, true);

  const no = await member.supabase.storage.from('documents').exists(`${demo.umoja}/no-such-${unique()}.txt`);
  assert.equal(no.data, false);
  assert.ok(no.error instanceof StorageApiError, `a StorageApiError, got ${no.error}`);
  assert.equal(no.error.status, 404);
});

test('an outsider gets 404 for the object, as if it did not exist', async () => {
  const { path } = await uploadMinutes();
  const download = await outsider.supabase.storage.from('documents').download(path);
  assert.equal(download.data, null);
  assert.ok(download.error instanceof StorageApiError, `a StorageApiError, got ${download.error}`);
  assert.equal(download.error.status, 404);

  const exists = await outsider.supabase.storage.from('documents').exists(path);
  assert.equal(exists.data, false);
});

test('list() shows the folder\'s files with their metadata', async () => {
  const folder = `${demo.umoja}/js-list-${unique()}`;
  const bucket = official.supabase.storage.from('documents');
  for (const name of ['b.txt', 'a.txt']) {
    const { error } = await bucket.upload(`${folder}/${name}`, new Blob([name], { type: 'text/plain' }));
    assert.equal(error, null);
  }
  const { data, error } = await member.supabase.storage.from('documents').list(folder, { sortBy: { column: 'name', order: 'asc' } });
  assert.equal(error, null);
  assert.deepEqual(data.map((f) => f.name), ['a.txt', 'b.txt']);
  assert.equal(data[0].metadata.size, 5);
  assert.equal(data[0].metadata.mimetype, 'text/plain');

  // the chama's folder shows the sub-folder as a folder entry (id null)
  const top = await member.supabase.storage.from('documents').list(demo.umoja, { limit: 1000, search: folder.split('/')[1] });
  assert.equal(top.error, null);
  assert.deepEqual(top.data.map((f) => [f.name, f.id]), [[folder.split('/')[1], null]]);

  const none = await outsider.supabase.storage.from('documents').list(folder);
  assert.deepEqual(none.data, []);
});

test('createSignedUrl gives a link anyone can fetch, with byte ranges', async () => {
  const { path } = await uploadMinutes();
  const { data, error } = await member.supabase.storage.from('documents').createSignedUrl(path, 60);
  assert.equal(error, null);
  assert.ok(data.signedUrl.startsWith(`${process.env.SUPABASE_URL}/storage/v1/object/sign/documents/`));

  const whole = await fetch(data.signedUrl);
  assert.equal(whole.status, 200);
  assert.equal(await whole.text(), text);

  const range = await fetch(data.signedUrl, { headers: { Range: 'bytes=0-6' } });
  assert.equal(range.status, 206);
  assert.equal(range.headers.get('content-range'), `bytes 0-6/${Buffer.byteLength(text)}`);
  assert.equal(await range.text(), 'Minutes');

  const tampered = await fetch(data.signedUrl.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')));
  assert.equal(tampered.status, 400);
});

test('createSignedUrls signs several paths at once, with an error for one the caller cannot see', async () => {
  const [{ path: a }, { path: b }] = [await uploadMinutes(), await uploadMinutes()];
  const missing = `${demo.umoja}/missing-${unique()}.txt`;
  const { data, error } = await member.supabase.storage.from('documents').createSignedUrls([a, b, missing], 60);
  assert.equal(error, null);
  assert.deepEqual(data.map((d) => d.path), [a, b, missing]);
  assert.equal(data[2].signedUrl, null);
  assert.ok(data[2].error);
  for (const signed of data.slice(0, 2)) {
    assert.equal(signed.error, null);
    const response = await fetch(signed.signedUrl);
    assert.equal(response.status, 200);
    assert.equal(await response.text(), text);
  }
});

test('move() renames and copy() duplicates, as an official', async () => {
  const bucket = official.supabase.storage.from('documents');
  const { path } = await uploadMinutes();
  const moved = `${demo.umoja}/js-moved-${unique()}.txt`;
  const move = await bucket.move(path, moved);
  assert.equal(move.error, null);
  assert.equal((await bucket.exists(path)).data, false);
  assert.equal(await (await bucket.download(moved)).data.text(), text);

  const copied = `${demo.umoja}/js-copied-${unique()}.txt`;
  const copy = await bucket.copy(moved, copied);
  assert.equal(copy.error, null);
  assert.equal(copy.data.path, `documents/${copied}`);
  assert.equal(await (await member.supabase.storage.from('documents').download(copied)).data.text(), text);

  // a member may not rename what only officials write
  const refused = await member.supabase.storage.from('documents').move(copied, `${demo.umoja}/js-${unique()}.txt`);
  assert.ok(refused.error instanceof StorageApiError, `a StorageApiError, got ${refused.error}`);
});

test('a Range download of the authenticated object URL, as a media player seeks', async () => {
  const { path } = await uploadMinutes();
  const objectUrl = `${process.env.SUPABASE_URL}/storage/v1/object/authenticated/documents/${path}`;
  const headers = { Authorization: `Bearer ${member.session.access_token}` };
  const tail = await fetch(objectUrl, { headers: { ...headers, Range: 'bytes=-10' } });
  assert.equal(tail.status, 206);
  assert.equal(await tail.text(), text.slice(-10));

  const past = await fetch(objectUrl, { headers: { ...headers, Range: 'bytes=9999-' } });
  assert.equal(past.status, 416);
});

test('remove() deletes, after which the object is gone for everyone', async () => {
  const { path } = await uploadMinutes();
  const { data, error } = await official.supabase.storage.from('documents').remove([path]);
  assert.equal(error, null);
  assert.deepEqual(data.map((o) => o.name), [path]);

  const exists = await member.supabase.storage.from('documents').exists(path);
  assert.equal(exists.data, false);
  const download = await official.supabase.storage.from('documents').download(path);
  assert.equal(download.error.status, 404);
});

test('a member cannot remove what only officials may delete: nothing is removed', async () => {
  const { path } = await uploadMinutes();
  const { data, error } = await member.supabase.storage.from('documents').remove([path]);
  assert.equal(error, null);
  assert.deepEqual(data, []);
  assert.equal((await member.supabase.storage.from('documents').exists(path)).data, true);
});

test('an upload the policies refuse is a StorageApiError 403, and nothing is stored', async () => {
  const path = `${demo.umoja}/js-refused-${unique()}.txt`;
  const { data, error } = await member.supabase.storage.from('documents').upload(path, new Blob(['not an official'], { type: 'text/plain' }));
  assert.equal(data, null);
  assert.ok(error instanceof StorageApiError, `a StorageApiError, got ${error}`);
  assert.equal(error.status, 403);
  assert.equal(error.statusCode, '403');
  assert.match(error.message, /row-level security/);
  assert.equal((await official.supabase.storage.from('documents').exists(path)).data, false);
});

test('a refused multipart upload reaches the client as a 403 every time, never as a network error', async () => {
  // the server used to answer before reading the body and close: fetch, still writing it,
  // then failed with EPIPE ("fetch failed") about one time in three
  for (let i = 0; i < 12; i += 1) {
    const file = new Blob(['x'.repeat(4096)], { type: 'text/plain' });
    const { error } = await member.supabase.storage.from('documents').upload(`${demo.umoja}/js-refused-${unique()}.txt`, file);
    assert.ok(error instanceof StorageApiError, `try ${i}: a StorageApiError, got ${error?.name}: ${error?.message}`);
    assert.equal(error.status, 403);
  }
});

test('an avatar in the public bucket is fetched through getPublicUrl without a token', async () => {
  const path = `${demo.wanjiku.id}/js-${unique()}.png`;
  const png = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
  const upload = await official.supabase.storage.from('avatars').upload(path, png, { contentType: 'image/png' });
  assert.equal(upload.error, null);

  const { data } = official.supabase.storage.from('avatars').getPublicUrl(path);
  const response = await fetch(data.publicUrl);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('content-type'), 'image/png');
  assert.deepEqual(Buffer.from(await response.arrayBuffer()), png);

  // someone else's folder is refused
  const other = await outsider.supabase.storage.from('avatars').upload(`${demo.wanjiku.id}/x-${unique()}.png`, png, { contentType: 'image/png' });
  assert.equal(other.error?.status, 403);
});

test('buckets are under RLS: a user sees none, the service role sees them all', async () => {
  const mine = await official.supabase.storage.listBuckets();
  assert.equal(mine.error, null);
  assert.deepEqual(mine.data, []);
  const one = await official.supabase.storage.getBucket('documents');
  assert.equal(one.data, null);
  assert.equal(one.error?.status, 404);

  const service = client(serviceKey);
  const all = await service.storage.listBuckets();
  assert.equal(all.error, null);
  assert.deepEqual(all.data.map((b) => b.id).sort(), ['avatars', 'documents', 'recordings']);
  const avatars = await service.storage.getBucket('avatars');
  assert.equal(avatars.error, null);
  assert.equal(avatars.data.public, true);
  assert.equal(avatars.data.file_size_limit, 2 * 1024 * 1024);
  const documents = all.data.find((b) => b.id === 'documents');
  assert.equal(documents.public, false);
});

test('createSignedUploadUrl by an official, uploadToSignedUrl with no session; a member gets no URL', async () => {
  const path = `${demo.umoja}/js-signed-${unique()}.txt`;
  const signed = await official.supabase.storage.from('documents').createSignedUploadUrl(path);
  assert.equal(signed.error, null, `sign: ${signed.error?.message}`);
  assert.equal(signed.data.path, path);
  assert.ok(signed.data.token);

  const anonymous = client(); // whoever holds the URL: no sign-in
  const uploaded = await anonymous.storage
    .from('documents')
    .uploadToSignedUrl(path, signed.data.token, new Blob([text], { type: 'text/plain' }));
  assert.equal(uploaded.error, null, `upload: ${uploaded.error?.message}`);
  assert.equal(uploaded.data.path, path);
  const download = await member.supabase.storage.from('documents').download(path);
  assert.equal(await download.data.text(), text);

  const again = await anonymous.storage
    .from('documents')
    .uploadToSignedUrl(path, signed.data.token, new Blob(['second'], { type: 'text/plain' }));
  assert.ok(again.error instanceof StorageApiError, 'a URL without upsert works once');

  const refused = await member.supabase.storage
    .from('documents')
    .createSignedUploadUrl(`${demo.umoja}/js-signed-${unique()}.txt`);
  assert.ok(refused.error instanceof StorageApiError, 'a member may not write Umoja documents');
  assert.equal(refused.data, null);
});
