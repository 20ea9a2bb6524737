// Auth (`supabase.auth`) as an app calls it, against `/auth/v1`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AuthApiError, isAuthApiError, isAuthSessionMissingError, isAuthWeakPasswordError } from '@supabase/supabase-js';
import { client, codeSentTo, demo, DEMO_PASSWORD, lastMailboxId, newPhone, newUser, serviceKey, unique } from './helpers.mjs';

/** The claims of an access token, as any JWT library would read them. */
function claims(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
}

test('signUp by email gives a session at once in --demo, and the user can use it', async () => {
  const supabase = client();
  const email = `JS-${unique()}@Example.com`;
  const { data, error } = await supabase.auth.signUp({
    email,
    password: 'Kenya-2026-pass',
    options: { data: { first_name: 'Amani' } },
  });
  assert.equal(error, null);
  assert.equal(data.user.email, email.toLowerCase());
  assert.ok(data.user.email_confirmed_at, 'confirmed: --demo needs no code');
  assert.deepEqual(data.user.user_metadata.first_name, 'Amani');
  assert.equal(data.user.app_metadata.provider, 'email');
  assert.equal(data.session.token_type, 'bearer');
  assert.equal(claims(data.session.access_token).sub, data.user.id);

  const me = await supabase.auth.getUser();
  assert.equal(me.error, null);
  assert.equal(me.data.user.id, data.user.id);
});

test('signUp by phone takes a Kenyan spelling and stores E.164 digits, as GoTrue does', async () => {
  const supabase = client();
  const phone = newPhone(); // 07XXXXXXXX
  const { data, error } = await supabase.auth.signUp({ phone, password: 'Kenya-2026-pass' });
  assert.equal(error, null);
  assert.equal(data.user.phone, `254${phone.slice(1)}`);
  assert.ok(data.user.phone_confirmed_at);
  assert.equal(data.user.app_metadata.provider, 'phone');
  assert.ok(data.session?.access_token, 'a session at once in --demo');

  // the same number in another spelling signs in to the same account
  const again = await client().auth.signInWithPassword({ phone: `+254${phone.slice(1)}`, password: 'Kenya-2026-pass' });
  assert.equal(again.error, null);
  assert.equal(again.data.user.id, data.user.id);
});

test('signUp again with a taken email is refused with user_already_exists', async () => {
  const { email } = await newUser();
  const { data, error } = await client().auth.signUp({ email, password: 'Another-pass-1' });
  assert.ok(isAuthApiError(error), `an AuthApiError, got ${error}`);
  assert.equal(error.code, 'user_already_exists');
  assert.equal(error.status, 422);
  assert.equal(data.user, null);
});

test('a weak password is an AuthWeakPasswordError with GoTrue\'s reasons', async () => {
  const short = await client().auth.signUp({ email: `js-${unique()}@example.com`, password: 'abc' });
  assert.ok(isAuthWeakPasswordError(short.error), `an AuthWeakPasswordError, got ${short.error}`);
  assert.equal(short.error.status, 422);
  assert.equal(short.error.code, 'weak_password');
  assert.deepEqual(short.error.reasons, ['length']);

  const { supabase } = await newUser();
  const common = await supabase.auth.updateUser({ password: 'password123' });
  assert.ok(isAuthWeakPasswordError(common.error), `an AuthWeakPasswordError, got ${common.error}`);
  assert.deepEqual(common.error.reasons, ['pwned']);
});

test('signInWithPassword: a demo user by email, with the claims Supabase puts in a token', async () => {
  const supabase = client();
  const { data, error } = await supabase.auth.signInWithPassword({ email: demo.wanjiku.email, password: DEMO_PASSWORD });
  assert.equal(error, null);
  assert.equal(data.user.id, demo.wanjiku.id);
  assert.ok(data.session.expires_at > Date.now() / 1000);
  const c = claims(data.session.access_token);
  assert.equal(c.sub, demo.wanjiku.id);
  assert.equal(c.role, 'authenticated');
  assert.equal(c.aud, 'authenticated');
  assert.equal(c.email, demo.wanjiku.email);
  assert.ok(c.session_id);
  assert.equal(c.aal, 'aal1');
  assert.equal(c.amr[0].method, 'password');
});

test('signInWithPassword: a demo user with no email, by phone', async () => {
  const { data, error } = await client().auth.signInWithPassword({ phone: demo.nafula.phone, password: DEMO_PASSWORD });
  assert.equal(error, null);
  assert.equal(data.user.id, demo.nafula.id);
  assert.equal(data.user.phone, '254720345007');
});

test('signInWithOtp by phone: the code (from the demo mailbox) and verifyOtp give a session', async () => {
  const supabase = client();
  const before = await lastMailboxId();
  const sent = await supabase.auth.signInWithOtp({ phone: demo.nafula.phone, options: { shouldCreateUser: false } });
  assert.equal(sent.error, null);
  assert.equal(sent.data.session, null);

  const wrong = await client().auth.verifyOtp({ phone: demo.nafula.phone, token: '000000', type: 'sms' });
  assert.ok(isAuthApiError(wrong.error), `an AuthApiError, got ${wrong.error}`);
  assert.equal(wrong.error.code, 'otp_expired');

  const token = await codeSentTo('+254720345007', before);
  const { data, error } = await supabase.auth.verifyOtp({ phone: demo.nafula.phone, token, type: 'sms' });
  assert.equal(error, null);
  assert.equal(data.user.id, demo.nafula.id);
  assert.equal((await supabase.auth.getSession()).data.session.access_token, data.session.access_token);
});

test('getSession and getUser give the signed-in user', async () => {
  const supabase = client();
  const signIn = await supabase.auth.signInWithPassword({ email: demo.wanjiku.email, password: DEMO_PASSWORD });
  assert.equal(signIn.error, null);

  const { data: { session } } = await supabase.auth.getSession();
  assert.equal(session.access_token, signIn.data.session.access_token);
  assert.equal(session.user.id, demo.wanjiku.id);

  const { data, error } = await supabase.auth.getUser();
  assert.equal(error, null);
  assert.equal(data.user.id, demo.wanjiku.id);
  assert.equal(data.user.email, demo.wanjiku.email);
  assert.equal(data.user.user_metadata.first_name, 'Wanjiku');
  assert.equal(data.user.identities[0].provider, 'email');
});

test('getClaims reads the verified claims of the session', async () => {
  const supabase = client();
  await supabase.auth.signInWithPassword({ email: demo.wanjiku.email, password: DEMO_PASSWORD });
  const { data, error } = await supabase.auth.getClaims();
  assert.equal(error, null);
  assert.equal(data.claims.sub, demo.wanjiku.id);
  assert.equal(data.claims.role, 'authenticated');
});

test('refreshSession rotates the refresh token, and the new access token works', async () => {
  const { supabase, session: first } = await newUser();
  const { data, error } = await supabase.auth.refreshSession();
  assert.equal(error, null);
  assert.notEqual(data.session.refresh_token, first.refresh_token);
  assert.equal(claims(data.session.access_token).session_id, claims(first.access_token).session_id);

  const current = await supabase.auth.getSession();
  assert.equal(current.data.session.refresh_token, data.session.refresh_token);
  const me = await supabase.auth.getUser();
  assert.equal(me.error, null);
  assert.equal(me.data.user.id, first.user.id);
});

test('updateUser changes user metadata, and getUser reads it back', async () => {
  const { supabase, user } = await newUser({ first_name: 'Baraka' });
  const { data, error } = await supabase.auth.updateUser({ data: { language: 'sw', county: 'Kisumu' } });
  assert.equal(error, null);
  assert.equal(data.user.id, user.id);
  assert.equal(data.user.user_metadata.language, 'sw');
  assert.equal(data.user.user_metadata.first_name, 'Baraka', 'merged, not replaced');

  const me = await supabase.auth.getUser();
  assert.equal(me.data.user.user_metadata.county, 'Kisumu');
});

test('after signOut the old access token and refresh token are refused', async () => {
  const { supabase, session } = await newUser();
  const out = await supabase.auth.signOut();
  assert.equal(out.error, null);
  assert.equal((await supabase.auth.getSession()).data.session, null);

  // the token a stolen copy would hold: its session has ended. The server answers 403
  // session_not_found, which auth-js turns into AuthSessionMissingError (and drops its session).
  const { data, error } = await client().auth.getUser(session.access_token);
  assert.ok(isAuthSessionMissingError(error), `an AuthSessionMissingError, got ${error}`);
  assert.equal(data.user, null);

  const refreshed = await client().auth.refreshSession({ refresh_token: session.refresh_token });
  assert.ok(isAuthApiError(refreshed.error), `an AuthApiError, got ${refreshed.error}`);
  assert.equal(refreshed.error.code, 'refresh_token_not_found');
  assert.equal(refreshed.data.session, null);
});

test('signOut({ scope: "others" }) ends the other sessions and keeps this one', async () => {
  const { supabase, email, password } = await newUser();
  const elsewhere = await client().auth.signInWithPassword({ email, password });
  assert.equal(elsewhere.error, null);
  const out = await supabase.auth.signOut({ scope: 'others' });
  assert.equal(out.error, null);

  assert.equal((await supabase.auth.getUser()).error, null);
  const other = await client().auth.getUser(elsewhere.data.session.access_token);
  assert.ok(isAuthSessionMissingError(other.error), `an AuthSessionMissingError, got ${other.error}`);
});

test('a wrong password is an AuthApiError invalid_credentials (400)', async () => {
  const { email } = await newUser();
  const { data, error } = await client().auth.signInWithPassword({ email, password: 'not-the-password' });
  assert.ok(error instanceof AuthApiError, `an AuthApiError, got ${error}`);
  assert.equal(error.status, 400);
  assert.equal(error.code, 'invalid_credentials');
  assert.equal(error.message, 'Invalid login credentials');
  assert.equal(data.session, null);
});

test('signInAnonymously is refused: anonymous_provider_disabled (422)', async () => {
  const { data, error } = await client().auth.signInAnonymously();
  assert.ok(error instanceof AuthApiError, `an AuthApiError, got ${error}`);
  assert.equal(error.status, 422);
  assert.equal(error.code, 'anonymous_provider_disabled');
  assert.equal(data.session, null);
});

test('a route this server does not serve answers in GoTrue\'s shape (auth.mfa.enroll)', async () => {
  const { supabase } = await newUser();
  const { data, error } = await supabase.auth.mfa.enroll({ factorType: 'totp' });
  assert.ok(error instanceof AuthApiError, `an AuthApiError, got ${error}`);
  assert.equal(error.status, 404);
  assert.equal(error.code, 'not_found');
  // the client found a message in the body: it did not fall back to showing the raw JSON
  assert.ok(!error.message.startsWith('{'), `a readable message, got ${error.message}`);
  assert.equal(data, null);
});

test('auth.resend is served (re-sending a sign-up or phone-change code)', { todo: 'POST /auth/v1/resend is not served: 404 not_found' }, async () => {
  const { supabase, email } = await newUser();
  const { error } = await supabase.auth.resend({ type: 'signup', email });
  // GoTrue answers either {} or a refusal about this user's state; never "no such route"
  assert.notEqual(error?.status, 404, `${error?.code}: ${error?.message}`);
});

test('auth.admin with the service key: createUser, getUserById, listUsers, updateUserById, deleteUser', async () => {
  const admin = client(serviceKey).auth.admin;
  const email = `js-admin-${unique()}@example.com`;
  const created = await admin.createUser({ email, password: `pw-${unique()}-long`, email_confirm: true, user_metadata: { first_name: 'Amani' } });
  assert.equal(created.error, null, created.error?.message);
  assert.equal(created.data.user.email, email);
  assert.ok(created.data.user.email_confirmed_at);
  const id = created.data.user.id;

  const found = await admin.getUserById(id);
  assert.equal(found.data.user.id, id);
  const listed = await admin.listUsers({ page: 1, perPage: 1000 });
  assert.equal(listed.error, null);
  assert.ok(listed.data.users.some((u) => u.id === id));
  assert.ok(listed.data.total >= listed.data.users.length);

  const updated = await admin.updateUserById(id, { user_metadata: { first_name: 'Amani', last_name: 'Kariuki' } });
  assert.equal(updated.data.user.user_metadata.last_name, 'Kariuki');

  const deleted = await admin.deleteUser(id);
  assert.equal(deleted.error, null, deleted.error?.message);
  const gone = await admin.getUserById(id);
  assert.ok(isAuthApiError(gone.error));
  assert.equal(gone.error.status, 404);
});

test('auth.admin with the anon key is refused as GoTrue refuses it (403 not_admin)', async () => {
  const { error } = await client().auth.admin.listUsers();
  assert.ok(isAuthApiError(error));
  assert.equal(error.status, 403);
  assert.equal(error.code, 'not_admin');
});
