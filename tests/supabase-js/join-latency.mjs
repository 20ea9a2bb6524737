// How long a realtime join takes to be answered, frame by frame, over a real socket: the join
// reply and the `system` frame the server writes right after it. With Nagle's algorithm on, the
// second small write waits for the client's delayed ACK (about 40 ms on Linux); with TCP_NODELAY
// both arrive together. The heartbeat round trip on the same socket is the baseline.
//
//   node tests/supabase-js/join-latency.mjs <server URL> <anon key> <user access token> [joins]
import WebSocket from 'ws';

const [url, apikey, token, joins = '50'] = process.argv.slice(2);
const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/realtime/v1/websocket?apikey=${apikey}&vsn=1.0.0`);
await new Promise((resolve, reject) => { socket.once('open', resolve); socket.once('error', reject); });

let ref = 0;
const waiting = new Map();
socket.on('message', (data) => {
  const frame = JSON.parse(data.toString());
  const key = frame.event === 'phx_reply' ? `reply:${frame.ref}` : `${frame.event}:${frame.topic}`;
  waiting.get(key)?.(performance.now());
  waiting.delete(key);
});
const arrival = (key) => new Promise((resolve) => waiting.set(key, resolve));
const send = (topic, event, payload, joinRef = null) => {
  ref += 1;
  socket.send(JSON.stringify({ topic, event, payload, ref: String(ref), join_ref: joinRef }));
  return String(ref);
};

const heartbeats = [];
const replies = [];
const systems = [];
for (let i = 0; i < Number(joins); i += 1) {
  let start = performance.now();
  const beat = arrival(`reply:${ref + 1}`);
  send('phoenix', 'heartbeat', {});
  heartbeats.push((await beat) - start);

  const topic = `realtime:latency-${i}`;
  start = performance.now();
  const reply = arrival(`reply:${ref + 1}`);
  const system = arrival(`system:${topic}`);
  const config = { broadcast: { self: false, ack: false }, presence: { key: '' }, private: false,
    postgres_changes: [{ event: '*', schema: 'public', table: 'notifications' }] };
  send(topic, 'phx_join', { config, access_token: token }, String(ref + 1));
  replies.push((await reply) - start);
  systems.push((await system) - start);
  send(topic, 'phx_leave', {});
}
socket.close();

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p95 = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.95)];
const line = (name, xs) => console.log(`${name.padEnd(28)} median ${median(xs).toFixed(2)} ms   p95 ${p95(xs).toFixed(2)} ms`);
line('heartbeat round trip', heartbeats);
line('join reply', replies);
line('system frame after the join', systems);
console.log(`system frame / heartbeat (median): ${(median(systems) / median(heartbeats)).toFixed(2)}`);
