-- The PesaChama schema: the founding plan's nine tables, what the rules need around them, and
-- the `internal` schema for machinery the Data API must never expose.
--
-- Conventions: money is bigint minor units (cents) with a currency; phones are E.164 Kenyan
-- numbers; every constraint is named; every foreign key has an index; every large table carries
-- chama_id (the distribution key). RLS and grants come in a later migration, audit triggers too.

create schema if not exists internal;
revoke all on schema internal from public;
grant usage on schema internal to service_role;

-- Shared domains ---------------------------------------------------------------------------

create domain public.e164_phone as text
  constraint e164_phone_kenyan check (value ~ '^\+254[17][0-9]{8}$');

create domain public.currency_code as text
  default 'KES'
  constraint currency_code_iso check (value ~ '^[A-Z]{3}$');

-- Keeps updated_at honest on every update.
create function internal.touch_updated_at() returns trigger
  language plpgsql
  set search_path = ''
  as $$
begin
  new.updated_at := greatest(now(), new.created_at);
  return new;
end
$$;

-- Profiles ---------------------------------------------------------------------------------

create table public.users (
  id uuid not null,
  email text,
  phone public.e164_phone,
  first_name text,
  last_name text,
  id_number text,
  avatar_url text,
  language text not null default 'en',
  legacy_id text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  constraint users_pkey primary key (id),
  constraint users_id_fkey foreign key (id) references auth.users (id) on delete cascade,
  constraint users_email_valid check (email = lower(email) and email ~ '^[a-z0-9._%+''-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$'),
  constraint users_first_name_length check (char_length(first_name) between 1 and 100),
  constraint users_last_name_length check (char_length(last_name) between 1 and 100),
  constraint users_id_number_format check (id_number ~ '^[0-9A-Z]{5,20}$'),
  constraint users_language_known check (language in ('en', 'sw')),
  constraint users_updated_after_created check (updated_at >= created_at),
  constraint users_legacy_id_key unique (legacy_id)
);
create unique index users_live_email_key on public.users (email) where deleted_at is null;
create unique index users_live_phone_key on public.users (phone) where deleted_at is null;
comment on table public.users is 'Member profiles, one per auth.users row, created with it.';

-- Chamas -----------------------------------------------------------------------------------

create table public.chamas (
  id uuid not null default gen_random_uuid(),
  name text not null,
  description text,
  chama_type text not null default 'savings',
  registration_number text,
  contribution_amount bigint not null,
  contribution_frequency text not null default 'monthly',
  currency public.currency_code not null default 'KES',
  balance bigint not null default 0,
  paybill_account text,
  join_code text not null default upper(substr(md5(gen_random_uuid()::text), 1, 8)),
  required_approvals integer not null default 2,
  status text not null default 'active',
  created_by uuid,
  legacy_id text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  closed_at timestamptz,
  deleted_at timestamptz,
  constraint chamas_pkey primary key (id),
  constraint chamas_created_by_fkey foreign key (created_by) references public.users (id) on delete set null,
  constraint chamas_name_length check (char_length(btrim(name)) between 2 and 150),
  constraint chamas_type_known check (chama_type in ('savings', 'merry_go_round', 'investment', 'table_banking')),
  constraint chamas_contribution_positive check (contribution_amount > 0),
  constraint chamas_frequency_known check (contribution_frequency in ('weekly', 'biweekly', 'monthly')),
  -- Maintained by the ledger (internal.post_journal), never written by hand.
  constraint chamas_balance_not_negative check (balance >= 0),
  constraint chamas_paybill_account_format check (paybill_account ~ '^[A-Z0-9]{3,12}$'),
  constraint chamas_paybill_account_key unique (paybill_account),
  constraint chamas_join_code_format check (join_code ~ '^[A-Z0-9]{6,12}$'),
  constraint chamas_join_code_key unique (join_code),
  constraint chamas_required_approvals_positive check (required_approvals >= 1),
  constraint chamas_status_known check (status in ('active', 'suspended', 'closed')),
  constraint chamas_closed_when_closed check ((status = 'closed') = (closed_at is not null)),
  constraint chamas_updated_after_created check (updated_at >= created_at),
  constraint chamas_legacy_id_key unique (legacy_id)
);
create index chamas_created_by_idx on public.chamas (created_by);

create table public.chama_members (
  id uuid not null default gen_random_uuid(),
  chama_id uuid not null,
  user_id uuid not null,
  role text not null default 'member',
  status text not null default 'active',
  -- The member's equity in the ledger (contributions net of reversals), maintained with it.
  contributed_total bigint not null default 0,
  invited_by uuid,
  joined_at timestamptz,
  left_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint chama_members_pkey primary key (id),
  constraint chama_members_chama_id_fkey foreign key (chama_id) references public.chamas (id),
  constraint chama_members_user_id_fkey foreign key (user_id) references public.users (id),
  constraint chama_members_invited_by_fkey foreign key (invited_by) references public.users (id) on delete set null,
  constraint chama_members_chama_user_key unique (chama_id, user_id),
  constraint chama_members_role_known check (role in ('chairperson', 'treasurer', 'secretary', 'member')),
  constraint chama_members_status_known check (status in ('invited', 'pending', 'active', 'suspended', 'left', 'declined')),
  constraint chama_members_joined_when_active check (status <> 'active' or joined_at is not null),
  constraint chama_members_updated_after_created check (updated_at >= created_at)
);
create index chama_members_user_id_idx on public.chama_members (user_id, status);
create index chama_members_invited_by_idx on public.chama_members (invited_by);
-- Exactly one chairperson per chama among the members who have not left.
create unique index chama_members_one_chairperson on public.chama_members (chama_id)
  where role = 'chairperson' and status in ('active', 'suspended');

create table public.chama_invitations (
  id uuid not null default gen_random_uuid(),
  chama_id uuid not null,
  phone public.e164_phone not null,
  role text not null default 'member',
  status text not null default 'pending',
  invited_by uuid,
  user_id uuid,
  expires_at timestamptz not null default now() + interval '30 days',
  responded_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint chama_invitations_pkey primary key (id),
  constraint chama_invitations_chama_id_fkey foreign key (chama_id) references public.chamas (id),
  constraint chama_invitations_invited_by_fkey foreign key (invited_by) references public.users (id) on delete set null,
  constraint chama_invitations_user_id_fkey foreign key (user_id) references public.users (id) on delete set null,
  constraint chama_invitations_role_known check (role in ('treasurer', 'secretary', 'member')),
  constraint chama_invitations_status_known check (status in ('pending', 'accepted', 'declined', 'revoked', 'expired')),
  constraint chama_invitations_updated_after_created check (updated_at >= created_at)
);
create unique index chama_invitations_one_pending on public.chama_invitations (chama_id, phone) where status = 'pending';
create index chama_invitations_phone_idx on public.chama_invitations (phone, status);
create index chama_invitations_invited_by_idx on public.chama_invitations (invited_by);
create index chama_invitations_user_id_idx on public.chama_invitations (user_id);

-- The ledger (internal) ----------------------------------------------------------------------
--
-- Postings are signed: positive debits, negative credits; every journal sums to zero (checked
-- by a deferred constraint trigger at commit). An account's balance is the sum of its postings
-- (debits minus credits), kept in the row by internal.post_journal under a fixed lock order.

create table internal.ledger_accounts (
  id uuid not null default gen_random_uuid(),
  chama_id uuid not null,
  kind text not null,
  user_id uuid,
  currency public.currency_code not null default 'KES',
  balance bigint not null default 0,
  created_at timestamptz not null default now(),
  constraint ledger_accounts_pkey primary key (id),
  constraint ledger_accounts_chama_id_fkey foreign key (chama_id) references public.chamas (id),
  constraint ledger_accounts_user_id_fkey foreign key (user_id) references public.users (id),
  -- cash: the chama's money (M-Pesa float, bank, cash box), debit-normal, mirrored in chamas.balance;
  -- member_equity: what one member has put in, credit-normal, mirrored in contributed_total;
  -- payouts_in_transit: money sent by B2C and not yet confirmed; disbursements: money paid out;
  -- fees: charges (M-Pesa, bank); chama_equity: interest, fines, opening balances, dividends.
  constraint ledger_accounts_kind_known check (kind in ('cash', 'member_equity', 'payouts_in_transit', 'disbursements', 'fees', 'chama_equity')),
  constraint ledger_accounts_member_equity_has_member check ((kind = 'member_equity') = (user_id is not null)),
  -- Money that is not there cannot leave: cash and money in transit never go below zero.
  constraint ledger_accounts_no_overdraft check (kind not in ('cash', 'payouts_in_transit') or balance >= 0)
);
create unique index ledger_accounts_chama_kind_key on internal.ledger_accounts (chama_id, kind) where user_id is null;
create unique index ledger_accounts_member_key on internal.ledger_accounts (chama_id, user_id) where user_id is not null;
create index ledger_accounts_user_id_idx on internal.ledger_accounts (user_id);

create table internal.journals (
  id uuid not null default gen_random_uuid(),
  chama_id uuid not null,
  kind text not null,
  memo text,
  reverses_id uuid,
  created_by uuid,
  created_at timestamptz not null default now(),
  constraint journals_pkey primary key (id),
  constraint journals_chama_id_fkey foreign key (chama_id) references public.chamas (id),
  constraint journals_reverses_id_fkey foreign key (reverses_id) references internal.journals (id),
  constraint journals_reversed_once unique (reverses_id),
  constraint journals_kind_known check (kind in ('contribution', 'reversal', 'disbursement', 'payout_settled', 'payout_failed', 'fee', 'interest', 'fine', 'dividend', 'loan', 'loan_repayment', 'opening_balance', 'adjustment'))
);
create index journals_chama_id_idx on internal.journals (chama_id, created_at);

create table internal.postings (
  id bigint generated always as identity,
  journal_id uuid not null,
  account_id uuid not null,
  amount bigint not null,
  constraint postings_pkey primary key (id),
  constraint postings_journal_id_fkey foreign key (journal_id) references internal.journals (id),
  constraint postings_account_id_fkey foreign key (account_id) references internal.ledger_accounts (id),
  constraint postings_amount_nonzero check (amount <> 0)
);
create index postings_journal_id_idx on internal.postings (journal_id);
create index postings_account_id_idx on internal.postings (account_id);

-- Money events (user-facing) -------------------------------------------------------------------

create table public.transactions (
  id uuid not null default gen_random_uuid(),
  chama_id uuid not null,
  user_id uuid,
  type text not null,
  amount bigint not null,
  currency public.currency_code not null default 'KES',
  status text not null default 'pending',
  payment_method text,
  reference text,
  mpesa_receipt text,
  phone public.e164_phone,
  description text,
  journal_id uuid,
  reverses_id uuid,
  reason text,
  metadata jsonb not null default '{}'::jsonb,
  created_by uuid,
  legacy_id text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint transactions_pkey primary key (id),
  constraint transactions_chama_id_fkey foreign key (chama_id) references public.chamas (id),
  constraint transactions_user_id_fkey foreign key (user_id) references public.users (id),
  constraint transactions_created_by_fkey foreign key (created_by) references public.users (id) on delete set null,
  constraint transactions_journal_id_fkey foreign key (journal_id) references internal.journals (id),
  constraint transactions_journal_id_key unique (journal_id),
  constraint transactions_reverses_id_fkey foreign key (reverses_id) references public.transactions (id),
  constraint transactions_reversed_once unique (reverses_id),
  constraint transactions_type_known check (type in ('contribution', 'withdrawal', 'disbursement', 'loan', 'loan_repayment', 'fine', 'interest', 'fee', 'dividend', 'reversal', 'opening_balance')),
  constraint transactions_amount_positive check (amount > 0),
  constraint transactions_status_known check (status in ('pending', 'completed', 'failed', 'reversed', 'cancelled')),
  constraint transactions_method_known check (payment_method in ('mpesa', 'cash', 'bank', 'internal')),
  constraint transactions_mpesa_receipt_format check (mpesa_receipt ~ '^[A-Z0-9]{10}$'),
  constraint transactions_mpesa_receipt_key unique (mpesa_receipt),
  constraint transactions_completed_has_journal check (status not in ('completed', 'reversed') or journal_id is not null),
  constraint transactions_reversal_has_reason check (type <> 'reversal' or (reverses_id is not null and reason is not null)),
  constraint transactions_updated_after_created check (updated_at >= created_at),
  constraint transactions_legacy_id_key unique (legacy_id)
);
create index transactions_chama_id_idx on public.transactions (chama_id, created_at desc);
create index transactions_user_id_idx on public.transactions (user_id, created_at desc);
create index transactions_created_by_idx on public.transactions (created_by);

-- Withdrawals approved by k of the officials -----------------------------------------------------

create table public.disbursement_requests (
  id uuid not null default gen_random_uuid(),
  chama_id uuid not null,
  requested_by uuid not null,
  recipient_user_id uuid,
  recipient_phone public.e164_phone not null,
  amount bigint not null,
  currency public.currency_code not null default 'KES',
  reason text not null,
  status text not null default 'pending',
  required_approvals integer not null,
  approvals_count integer not null default 0,
  rejections_count integer not null default 0,
  transaction_id uuid,
  journal_id uuid,
  originator_conversation_id text,
  conversation_id text,
  mpesa_receipt text,
  result_code integer,
  result_desc text,
  decided_at timestamptz,
  expires_at timestamptz not null default now() + interval '14 days',
  legacy_id text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint disbursement_requests_pkey primary key (id),
  constraint disbursement_requests_chama_id_fkey foreign key (chama_id) references public.chamas (id),
  constraint disbursement_requests_requested_by_fkey foreign key (requested_by) references public.users (id),
  constraint disbursement_requests_recipient_user_id_fkey foreign key (recipient_user_id) references public.users (id),
  constraint disbursement_requests_transaction_id_fkey foreign key (transaction_id) references public.transactions (id),
  constraint disbursement_requests_journal_id_fkey foreign key (journal_id) references internal.journals (id),
  constraint disbursement_requests_amount_positive check (amount > 0),
  constraint disbursement_requests_reason_present check (char_length(btrim(reason)) between 3 and 500),
  -- pending -> approved (money reserved) -> processing (payout sent) -> completed | failed
  -- (money returned); or pending -> rejected | cancelled | expired.
  constraint disbursement_requests_status_known check (status in ('pending', 'approved', 'rejected', 'processing', 'completed', 'failed', 'cancelled', 'expired')),
  constraint disbursement_requests_expires_after_created check (expires_at > created_at),
  constraint disbursement_requests_required_positive check (required_approvals >= 1),
  constraint disbursement_requests_counts_valid check (approvals_count >= 0 and rejections_count >= 0),
  constraint disbursement_requests_originator_key unique (originator_conversation_id),
  constraint disbursement_requests_conversation_key unique (conversation_id),
  constraint disbursement_requests_receipt_key unique (mpesa_receipt),
  constraint disbursement_requests_updated_after_created check (updated_at >= created_at),
  constraint disbursement_requests_legacy_id_key unique (legacy_id)
);
create index disbursement_requests_chama_id_idx on public.disbursement_requests (chama_id, status);
create index disbursement_requests_requested_by_idx on public.disbursement_requests (requested_by);
create index disbursement_requests_recipient_idx on public.disbursement_requests (recipient_user_id);
create index disbursement_requests_transaction_id_idx on public.disbursement_requests (transaction_id);
create index disbursement_requests_journal_id_idx on public.disbursement_requests (journal_id);

create table public.disbursement_approvals (
  id uuid not null default gen_random_uuid(),
  request_id uuid not null,
  chama_id uuid not null,
  approver_id uuid not null,
  decision text not null,
  comment text,
  created_at timestamptz not null default now(),
  constraint disbursement_approvals_pkey primary key (id),
  constraint disbursement_approvals_request_id_fkey foreign key (request_id) references public.disbursement_requests (id),
  constraint disbursement_approvals_chama_id_fkey foreign key (chama_id) references public.chamas (id),
  constraint disbursement_approvals_approver_id_fkey foreign key (approver_id) references public.users (id),
  constraint disbursement_approvals_once_per_official unique (request_id, approver_id),
  constraint disbursement_approvals_decision_known check (decision in ('approve', 'reject'))
);
create index disbursement_approvals_chama_id_idx on public.disbursement_approvals (chama_id);
create index disbursement_approvals_approver_id_idx on public.disbursement_approvals (approver_id);

-- Meetings -------------------------------------------------------------------------------------

create table public.meetings (
  id uuid not null default gen_random_uuid(),
  chama_id uuid not null,
  title text not null,
  agenda text,
  scheduled_for timestamptz not null,
  duration_minutes integer not null default 60,
  venue text,
  meeting_type text not null default 'physical',
  agora_channel text,
  minutes text,
  minutes_object_id uuid,
  recording_object_id uuid,
  status text not null default 'scheduled',
  created_by uuid,
  legacy_id text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint meetings_pkey primary key (id),
  constraint meetings_chama_id_fkey foreign key (chama_id) references public.chamas (id),
  constraint meetings_created_by_fkey foreign key (created_by) references public.users (id) on delete set null,
  constraint meetings_minutes_object_fkey foreign key (minutes_object_id) references storage.objects (id) on delete set null,
  constraint meetings_recording_object_fkey foreign key (recording_object_id) references storage.objects (id) on delete set null,
  constraint meetings_title_length check (char_length(btrim(title)) between 2 and 200),
  constraint meetings_duration_positive check (duration_minutes between 1 and 1440),
  constraint meetings_type_known check (meeting_type in ('physical', 'virtual', 'hybrid')),
  constraint meetings_status_known check (status in ('scheduled', 'in_progress', 'held', 'cancelled')),
  constraint meetings_agora_channel_key unique (agora_channel),
  constraint meetings_updated_after_created check (updated_at >= created_at),
  constraint meetings_legacy_id_key unique (legacy_id)
);
create index meetings_chama_id_idx on public.meetings (chama_id, scheduled_for);
create index meetings_created_by_idx on public.meetings (created_by);
create index meetings_minutes_object_idx on public.meetings (minutes_object_id);
create index meetings_recording_object_idx on public.meetings (recording_object_id);

create table public.meeting_attendance (
  meeting_id uuid not null,
  chama_id uuid not null,
  user_id uuid not null,
  status text not null default 'present',
  checked_in_at timestamptz,
  recorded_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint meeting_attendance_pkey primary key (meeting_id, user_id),
  constraint meeting_attendance_meeting_id_fkey foreign key (meeting_id) references public.meetings (id),
  constraint meeting_attendance_chama_id_fkey foreign key (chama_id) references public.chamas (id),
  constraint meeting_attendance_user_id_fkey foreign key (user_id) references public.users (id),
  constraint meeting_attendance_recorded_by_fkey foreign key (recorded_by) references public.users (id) on delete set null,
  constraint meeting_attendance_status_known check (status in ('present', 'late', 'apologies', 'absent')),
  constraint meeting_attendance_updated_after_created check (updated_at >= created_at)
);
create index meeting_attendance_chama_id_idx on public.meeting_attendance (chama_id);
create index meeting_attendance_user_id_idx on public.meeting_attendance (user_id);
create index meeting_attendance_recorded_by_idx on public.meeting_attendance (recorded_by);

-- M-Pesa ---------------------------------------------------------------------------------------

-- An STK push intent: created before Daraja is called, matched by CheckoutRequestID when the
-- callback comes.
create table public.payment_requests (
  id uuid not null default gen_random_uuid(),
  chama_id uuid not null,
  user_id uuid not null,
  phone public.e164_phone not null,
  amount bigint not null,
  currency public.currency_code not null default 'KES',
  purpose text not null default 'contribution',
  status text not null default 'queued',
  channel text not null default 'app',
  merchant_request_id text,
  checkout_request_id text,
  mpesa_receipt text,
  result_code integer,
  result_desc text,
  failure_reason text,
  transaction_id uuid,
  expires_at timestamptz not null default now() + interval '10 minutes',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint payment_requests_pkey primary key (id),
  constraint payment_requests_chama_id_fkey foreign key (chama_id) references public.chamas (id),
  constraint payment_requests_user_id_fkey foreign key (user_id) references public.users (id),
  constraint payment_requests_transaction_id_fkey foreign key (transaction_id) references public.transactions (id),
  constraint payment_requests_amount_positive check (amount > 0),
  constraint payment_requests_purpose_known check (purpose in ('contribution', 'loan_repayment', 'fine')),
  constraint payment_requests_status_known check (status in ('queued', 'sent', 'completed', 'failed', 'cancelled', 'review')),
  constraint payment_requests_channel_known check (channel in ('app', 'ussd', 'api')),
  constraint payment_requests_merchant_key unique (merchant_request_id),
  constraint payment_requests_checkout_key unique (checkout_request_id),
  constraint payment_requests_receipt_key unique (mpesa_receipt),
  constraint payment_requests_updated_after_created check (updated_at >= created_at)
);
create index payment_requests_chama_id_idx on public.payment_requests (chama_id, created_at desc);
create index payment_requests_user_id_idx on public.payment_requests (user_id, created_at desc);
create index payment_requests_transaction_id_idx on public.payment_requests (transaction_id);
create index payment_requests_open_idx on public.payment_requests (status, created_at) where status in ('queued', 'sent');

-- Every callback Safaricom sends, stored raw before anything is applied. The idempotency key is
-- the external id (CheckoutRequestID, TransID, ConversationID) so a repeat is recognised.
create table internal.mpesa_callbacks (
  id bigint generated always as identity,
  kind text not null,
  idempotency_key text not null,
  payload jsonb not null,
  source_ip inet,
  status text not null default 'received',
  error text,
  attempts integer not null default 0,
  received_at timestamptz not null default now(),
  applied_at timestamptz,
  constraint mpesa_callbacks_pkey primary key (id),
  constraint mpesa_callbacks_kind_known check (kind in ('stk', 'c2b_validation', 'c2b_confirmation', 'b2c_result', 'b2c_timeout', 'status_result', 'status_timeout')),
  constraint mpesa_callbacks_status_known check (status in ('received', 'applied', 'duplicate', 'review', 'failed', 'ignored')),
  constraint mpesa_callbacks_idempotency_key unique (kind, idempotency_key)
);
create index mpesa_callbacks_pending_idx on internal.mpesa_callbacks (received_at) where status in ('received', 'failed');

-- USSD, notifications, devices ------------------------------------------------------------------

create table public.ussd_sessions (
  id uuid not null default gen_random_uuid(),
  session_id text not null,
  phone_number public.e164_phone not null,
  service_code text,
  user_id uuid,
  language text not null default 'en',
  -- The menu state machine's state; never holds a PIN.
  state jsonb not null default '{}'::jsonb,
  hops integer not null default 0,
  status text not null default 'active',
  created_at timestamptz not null default now(),
  last_activity_at timestamptz not null default now(),
  expires_at timestamptz not null default now() + interval '180 seconds',
  constraint ussd_sessions_pkey primary key (id),
  constraint ussd_sessions_session_id_key unique (session_id),
  constraint ussd_sessions_user_id_fkey foreign key (user_id) references public.users (id) on delete set null,
  constraint ussd_sessions_language_known check (language in ('en', 'sw')),
  constraint ussd_sessions_status_known check (status in ('active', 'completed', 'timeout', 'failed')),
  constraint ussd_sessions_activity_after_created check (last_activity_at >= created_at)
);
create index ussd_sessions_user_id_idx on public.ussd_sessions (user_id);
create index ussd_sessions_expiry_idx on public.ussd_sessions (expires_at) where status = 'active';

create table public.notifications (
  id uuid not null default gen_random_uuid(),
  user_id uuid not null,
  chama_id uuid,
  type text not null,
  title text not null,
  body text,
  data jsonb not null default '{}'::jsonb,
  sent_via text[] not null default '{}',
  read_at timestamptz,
  legacy_id text,
  created_at timestamptz not null default now(),
  constraint notifications_pkey primary key (id),
  constraint notifications_user_id_fkey foreign key (user_id) references public.users (id) on delete cascade,
  constraint notifications_chama_id_fkey foreign key (chama_id) references public.chamas (id),
  constraint notifications_type_known check (type in ('transaction', 'meeting', 'approval', 'membership', 'system')),
  constraint notifications_title_length check (char_length(title) between 1 and 200),
  constraint notifications_channels_known check (sent_via <@ array['push', 'sms', 'email']::text[]),
  constraint notifications_legacy_id_key unique (legacy_id)
);
create index notifications_user_id_idx on public.notifications (user_id, created_at desc);
create index notifications_chama_id_idx on public.notifications (chama_id);

create table public.device_tokens (
  id uuid not null default gen_random_uuid(),
  user_id uuid not null,
  token text not null,
  platform text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now(),
  constraint device_tokens_pkey primary key (id),
  constraint device_tokens_user_id_fkey foreign key (user_id) references public.users (id) on delete cascade,
  constraint device_tokens_token_key unique (token),
  constraint device_tokens_token_length check (char_length(token) between 10 and 4096),
  constraint device_tokens_platform_known check (platform in ('android', 'ios', 'web')),
  constraint device_tokens_updated_after_created check (updated_at >= created_at)
);
create index device_tokens_user_id_idx on public.device_tokens (user_id);

-- Audit -----------------------------------------------------------------------------------------

-- Append-only and hash-chained: each row's hash covers the previous row of the same chain (one
-- chain per chama, per user, or for the platform), so a changed or deleted row breaks the chain.
create table public.audit_logs (
  id bigint generated always as identity,
  action text not null,
  table_name text,
  record_id text,
  chama_id uuid,
  actor_id uuid,
  actor_role text,
  old_row jsonb,
  new_row jsonb,
  metadata jsonb not null default '{}'::jsonb,
  chain_key text not null,
  chain_seq bigint not null,
  prev_hash text not null,
  hash text not null,
  created_at timestamptz not null default now(),
  constraint audit_logs_pkey primary key (id),
  constraint audit_logs_chain_position_key unique (chain_key, chain_seq),
  constraint audit_logs_action_present check (char_length(action) between 1 and 100)
);
-- No foreign keys on purpose: the audit outlives what it describes.
create index audit_logs_chama_id_idx on public.audit_logs (chama_id, created_at desc);
create index audit_logs_actor_id_idx on public.audit_logs (actor_id, created_at desc);
create index audit_logs_record_idx on public.audit_logs (table_name, record_id);

create table internal.audit_chain_heads (
  chain_key text not null,
  last_seq bigint not null default 0,
  last_hash text not null default '',
  constraint audit_chain_heads_pkey primary key (chain_key)
);

-- Machinery ---------------------------------------------------------------------------------------

-- Whatever must happen after a commit, written in the same transaction, done by a worker.
create table internal.outbox (
  id bigint generated always as identity,
  topic text not null,
  payload jsonb not null,
  dedupe_key text,
  status text not null default 'pending',
  attempts integer not null default 0,
  max_attempts integer not null default 10,
  run_after timestamptz not null default now(),
  locked_until timestamptz,
  last_error text,
  created_at timestamptz not null default now(),
  done_at timestamptz,
  constraint outbox_pkey primary key (id),
  constraint outbox_topic_present check (char_length(topic) between 1 and 100),
  constraint outbox_status_known check (status in ('pending', 'done', 'dead')),
  constraint outbox_dedupe_key unique (dedupe_key)
);
create index outbox_due_idx on internal.outbox (run_after, id) where status = 'pending';

-- Idempotency-Key of money-moving API requests: a replay gets the stored answer.
create table internal.idempotency_keys (
  scope text not null,
  key text not null,
  request_hash text not null,
  status text not null default 'in_flight',
  response_status integer,
  response_body jsonb,
  created_at timestamptz not null default now(),
  completed_at timestamptz,
  constraint idempotency_keys_pkey primary key (scope, key),
  constraint idempotency_keys_key_length check (char_length(key) between 1 and 255),
  constraint idempotency_keys_status_known check (status in ('in_flight', 'completed')),
  constraint idempotency_keys_completed_has_answer check (status <> 'completed' or response_status is not null)
);

-- Fixed-window rate limits shared by every server instance.
create table internal.rate_limits (
  bucket text not null,
  window_start timestamptz not null,
  count integer not null default 0,
  constraint rate_limits_pkey primary key (bucket, window_start)
);
create index rate_limits_window_idx on internal.rate_limits (window_start);

-- USSD PINs: hashed, with a lockout after repeated failures.
create table internal.user_pins (
  user_id uuid not null,
  pin_hash text not null,
  failed_attempts integer not null default 0,
  locked_until timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint user_pins_pkey primary key (user_id),
  constraint user_pins_user_id_fkey foreign key (user_id) references auth.users (id) on delete cascade,
  constraint user_pins_failed_attempts_valid check (failed_attempts >= 0)
);

-- updated_at triggers -----------------------------------------------------------------------------

do $$
declare
  t text;
begin
  foreach t in array array['users', 'chamas', 'chama_members', 'chama_invitations', 'transactions',
                           'disbursement_requests', 'meetings', 'meeting_attendance',
                           'payment_requests', 'device_tokens'] loop
    execute format('create trigger touch_updated_at before update on public.%I
                      for each row execute function internal.touch_updated_at()', t);
  end loop;
end
$$;
create trigger touch_updated_at before update on internal.user_pins
  for each row execute function internal.touch_updated_at();

grant all on all tables in schema internal to service_role;
grant all on all sequences in schema internal to service_role;
