// Realtime (`supabase.channel(...)`) as an app uses it, against `/realtime/v1/websocket`.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { client, demo, signedIn, unique, url, waitFor } from './helpers.mjs';

const clients = [];
after(async () => {
  for (const supabase of clients) {
    await supabase.removeAllChannels();
    // the server closes the socket cleanly ('timeout' otherwise). realtime-js 2.119 then keeps
    // a 10 s timer of its own alive: scripts/test-supabase-js runs node with --test-force-exit.
    assert.equal(await supabase.realtime.disconnect(), 'ok');
  }
});

/** Subscribes and resolves with the channel once the server said SUBSCRIBED; rejects on any
 * other status (CHANNEL_ERROR, TIMED_OUT, CLOSED) with the reason the client was given. */
function subscribed(channel) {
  return new Promise((resolve, reject) => {
    channel.subscribe((status, err) => {
      if (status === 'SUBSCRIBED') resolve(channel);
      else reject(new Error(`${channel.topic}: ${status}${err ? `: ${err.message}` : ''}`));
    }, 5000);
  });
}

test('postgres_changes: a member hears of a contribution recorded through the API, an outsider does not', async () => {
  const [member, outsider, official] = await Promise.all([signedIn(demo.nafula), signedIn(demo.otieno), signedIn(demo.wanjiku)]);
  clients.push(member.supabase, outsider.supabase);

  const heard = [];
  let onMemberEvent;
  const memberEvent = waitFor('the INSERT on transactions', 5000, (done) => { onMemberEvent = done; });
  const binding = { event: 'INSERT', schema: 'public', table: 'transactions', filter: `chama_id=eq.${demo.umoja}` };
  await subscribed(member.supabase.channel(`umoja-${unique()}`).on('postgres_changes', binding, (change) => {
    heard.push(change);
    onMemberEvent(change);
  }));
  const outsiderHeard = [];
  await subscribed(outsider.supabase.channel(`umoja-${unique()}`).on('postgres_changes', binding, (change) => outsiderHeard.push(change)));

  // the treasurer's cash contribution, by the app's own API
  const reference = `JS-${unique()}`;
  const response = await fetch(`${url}/transactions`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${official.session.access_token}`,
      'Content-Type': 'application/json',
      'Idempotency-Key': reference,
    },
    body: JSON.stringify({ chama_id: demo.umoja, member_id: demo.nafula.id, amount: 25000, payment_method: 'cash', reference }),
  });
  assert.equal(response.status, 201, await response.clone().text());

  const change = await memberEvent;
  assert.equal(change.eventType, 'INSERT');
  assert.equal(change.schema, 'public');
  assert.equal(change.table, 'transactions');
  assert.equal(change.new.reference, reference);
  assert.equal(change.new.chama_id, demo.umoja);
  assert.equal(change.new.user_id, demo.nafula.id);
  assert.equal(change.new.created_by, demo.wanjiku.id);
  assert.equal(change.new.type, 'contribution');
  assert.equal(change.new.amount, 25000, 'an int8 column arrives as a number');
  assert.ok(!Number.isNaN(Date.parse(change.commit_timestamp)));
  assert.deepEqual(change.errors, null);

  // the outsider's channel is on the same server and would have had it by now
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.deepEqual(outsiderHeard, []);
  assert.equal(heard.length, 1);
});

test('postgres_changes with event "*": the member\'s notification is inserted, then updated when read', async () => {
  const [member, official] = await Promise.all([signedIn(demo.nafula), signedIn(demo.wanjiku)]);
  clients.push(member.supabase);
  const changes = [];
  const waiters = [];
  const next = (what) => waitFor(what, 5000, (done) => waiters.push(done));
  const binding = { event: '*', schema: 'public', table: 'notifications', filter: `user_id=eq.${demo.nafula.id}` };
  await subscribed(member.supabase.channel(`mine-${unique()}`).on('postgres_changes', binding, (change) => {
    changes.push(change);
    waiters.shift()?.(change);
  }));

  const inserted = next('the notification INSERT');
  const reference = `JS-${unique()}`;
  const recorded = await fetch(`${url}/transactions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${official.session.access_token}`, 'Content-Type': 'application/json', 'Idempotency-Key': reference },
    body: JSON.stringify({ chama_id: demo.umoja, member_id: demo.nafula.id, amount: 10000, payment_method: 'cash', reference }),
  });
  assert.equal(recorded.status, 201, await recorded.clone().text());
  const insert = await inserted;
  assert.equal(insert.eventType, 'INSERT');
  assert.equal(insert.new.user_id, demo.nafula.id);
  assert.equal(insert.new.read_at, null);
  assert.equal(typeof insert.new.data, 'object', 'jsonb arrives as an object');
  assert.ok(Array.isArray(insert.new.sent_via), 'text[] arrives as an array');

  const updated = next('the notification UPDATE');
  const read = await fetch(`${url}/notifications/${insert.new.id}/read`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${member.session.access_token}` },
  });
  assert.ok(read.ok, `${read.status} ${await read.clone().text()}`);
  const update = await updated;
  assert.equal(update.eventType, 'UPDATE');
  assert.equal(update.new.id, insert.new.id);
  assert.ok(!Number.isNaN(Date.parse(update.new.read_at)));
  assert.equal(update.old.id, insert.new.id, 'the key of the old row');
});

test('broadcast: one client\'s message reaches another on the same channel, with ack', async () => {
  const [a, b] = await Promise.all([signedIn(demo.wanjiku), signedIn(demo.nafula)]);
  clients.push(a.supabase, b.supabase);
  const room = `meeting-room-${unique()}`;

  let onMessage;
  const received = waitFor('the broadcast', 5000, (done) => { onMessage = done; });
  await subscribed(b.supabase.channel(room).on('broadcast', { event: 'hand-raised' }, (message) => onMessage(message)));
  const sender = await subscribed(a.supabase.channel(room, { config: { broadcast: { ack: true } } }));

  const status = await sender.send({ type: 'broadcast', event: 'hand-raised', payload: { by: 'Wanjiku', seat: 3 } });
  assert.equal(status, 'ok', 'acknowledged by the server');
  const message = await received;
  assert.equal(message.event, 'hand-raised');
  assert.deepEqual(message.payload, { by: 'Wanjiku', seat: 3 });
});

test('broadcast with self: true comes back to the sender, anonymous clients included', async () => {
  const supabase = client();
  clients.push(supabase);
  let onMessage;
  const echoed = waitFor('the echo', 5000, (done) => { onMessage = done; });
  const channel = await subscribed(
    supabase.channel(`echo-${unique()}`, { config: { broadcast: { self: true } } }).on('broadcast', { event: 'ping' }, (m) => onMessage(m)),
  );
  await channel.send({ type: 'broadcast', event: 'ping', payload: { n: 1 } });
  assert.deepEqual((await echoed).payload, { n: 1 });
});

test('subscribing to a table that is not published ends in CHANNEL_ERROR with the reason', async () => {
  const supabase = client();
  clients.push(supabase);
  const channel = supabase.channel(`secret-${unique()}`).on('postgres_changes', { event: '*', schema: 'public', table: 'user_pins' }, () => {});
  const [status, err] = await waitFor('the refusal', 5000, (done) => channel.subscribe((s, e) => { if (s !== 'SUBSCRIBED') done([s, e]); }));
  assert.equal(status, 'CHANNEL_ERROR');
  assert.match(err.message, /not published/);
});

test('presence: track() is seen by the others on the channel', { todo: 'presence is not built (README, Realtime): track() answers "error"' }, async () => {
  const [a, b] = [client(), client()];
  clients.push(a, b);
  const room = `presence-${unique()}`;
  const watcher = b.channel(room, { config: { presence: { key: 'b' } } });
  let onJoin;
  const joined = waitFor('the presence join', 5000, (done) => { onJoin = done; });
  watcher.on('presence', { event: 'join' }, ({ key }) => onJoin(key));
  await subscribed(watcher);
  const tracker = await subscribed(a.channel(room, { config: { presence: { key: 'a' } } }));
  assert.equal(await tracker.track({ online: true }), 'ok');
  assert.equal(await joined, 'a');
});
