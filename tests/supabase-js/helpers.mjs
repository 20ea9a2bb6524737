// What every case shares: the server's address and keys (set by scripts/test-supabase-js), a
// client made exactly as an app makes one, and the demo data `serve --demo` loads
// (supabase/seed.sql).
import { createClient } from '@supabase/supabase-js';
import ws from 'ws';

function setting(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the suite with scripts/test-supabase-js`);
  return value;
}

export const url = setting('SUPABASE_URL');
export const anonKey = setting('SUPABASE_ANON_KEY');
export const serviceKey = setting('SUPABASE_SERVICE_KEY');

/** A client as an app creates one, without a browser: no persisted session, no refresh timer.
 * Node 22+ has a global WebSocket; on Node 20 realtime-js asks for one (`ws`), as its docs say. */
export function client(key = anonKey) {
  return createClient(url, key, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: globalThis.WebSocket ? {} : { transport: ws },
  });
}

/** Every demo user's password (README, "Auth"). */
export const DEMO_PASSWORD = 'password123';

/** Demo people and chamas (supabase/seed.sql). */
export const demo = {
  // chairperson of Umoja: an official, may write its documents
  wanjiku: { id: '5eed0000-0000-4000-8000-000000000001', email: 'wanjiku.kamau@example.co.ke', phone: '0712345001' },
  // a plain member of Umoja, no email: may read Umoja's documents, not write them
  nafula: { id: '5eed0000-0000-4000-8000-000000000007', phone: '0720345007' },
  // chairperson of Kisumu Boda Boda only: an outsider to Umoja
  otieno: { id: '5eed0000-0000-4000-8000-000000000002', email: 'otieno.odhiambo@example.co.ke' },
  umoja: 'c4a3a000-0000-4000-8000-000000000001',
};

/** A client signed in as a demo user (by email when they have one, else by phone). */
export async function signedIn(person) {
  const supabase = client();
  const credentials = person.email
    ? { email: person.email, password: DEMO_PASSWORD }
    : { phone: person.phone, password: DEMO_PASSWORD };
  const { data, error } = await supabase.auth.signInWithPassword(credentials);
  if (error) throw error;
  return { supabase, session: data.session, user: data.user };
}

/** Unique per call, so a run never meets the leftovers of another. */
let counter = 0;
export function unique() {
  counter += 1;
  return `${Date.now().toString(36)}${process.pid.toString(36)}${counter}`;
}

/** A Kenyan mobile number nobody has: 07 then eight digits. */
export function newPhone() {
  const digits = `${Date.now()}${process.pid}${(counter += 1)}`.slice(-8);
  return `07${digits}`;
}

/** A fresh user signed up by email (a session at once in --demo), for cases that change or end it. */
export async function newUser(data) {
  const supabase = client();
  const email = `js-${unique()}@example.com`;
  const password = `Js-pass-${unique()}`;
  const { data: result, error } = await supabase.auth.signUp({ email, password, options: { data } });
  if (error) throw error;
  return { supabase, email, password, session: result.session, user: result.user };
}

/** A promise that `register` hands a `done` callback: resolves with what `done` gets, or rejects after `ms`. */
export function waitFor(what, ms, register) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    register((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

/** The last code the demo mailbox (`<data dir>/mailbox.jsonl`, README "Auth") holds for `to`,
 * waiting up to 5 s for the outbox worker to deliver it. */
export async function codeSentTo(to, after) {
  const { readFile } = await import('node:fs/promises');
  const mailbox = `${setting('PESACHAMA_DATA_DIR')}/mailbox.jsonl`;
  for (let tries = 0; tries < 50; tries += 1) {
    const text = await readFile(mailbox, 'utf8').catch(() => '');
    const message = text
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line))
      .filter((line) => line.message?.to === to && line.id > after && /code is \d{6}/.test(line.message.message))
      .at(-1);
    if (message) return message.message.message.match(/code is (\d{6})/)[1];
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no code for ${to} in ${mailbox}`);
}

/** The id of the last message in the demo mailbox, so a case reads only what it caused. */
export async function lastMailboxId() {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile(`${setting('PESACHAMA_DATA_DIR')}/mailbox.jsonl`, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map((line) => JSON.parse(line).id).reduce((a, b) => Math.max(a, b), 0);
}
