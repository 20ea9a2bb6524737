-- Codes that may be spent by their hash alone: the `token` of an emailed link
-- (`GET /auth/v1/verify`) and supabase-js's `verifyOtp({ token_hash })`. Only the codes that
-- `auth.admin.generateLink` made are here. A code we send ourselves (sign-up, OTP, recovery,
-- a change of email or phone) is spent only together with its address, where attempts are
-- counted per account: its hash is SHA-224 of the address and six digits, which anyone who knows
-- the address can compute for every guess, so accepting the hash alone would let guesses spread
-- over many client addresses through. The hash itself stays where GoTrue keeps it, in
-- `auth.users`; this table only says which hashes came from a link.
create table internal.link_tokens (
  token_hash text not null,
  user_id uuid not null,
  created_at timestamptz not null default now(),
  constraint link_tokens_pkey primary key (token_hash),
  constraint link_tokens_user_id_fkey foreign key (user_id) references auth.users (id) on delete cascade
);
create index link_tokens_user_id_idx on internal.link_tokens (user_id);

alter table internal.link_tokens enable row level security;
revoke all on internal.link_tokens from public, anon, authenticated;
