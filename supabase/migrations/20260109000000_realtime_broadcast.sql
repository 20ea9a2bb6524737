-- Realtime broadcast across server processes.
--
-- A client's broadcast reaches the clients of its channel on its own process at once; to reach
-- those connected to the other `pesachama serve` processes of the database, the process
-- NOTIFYs `pesachama_broadcast` with its own id, the topic and the message. NOTIFY payloads are
-- capped at 8000 bytes, so a larger message is kept here for a minute and the notification
-- names its row instead. Unlogged: a broadcast is a passing message, never worth a WAL write
-- or surviving a crash.

create unlogged table internal.realtime_broadcasts (
  id bigint generated always as identity,
  topic text not null,
  payload jsonb not null,
  created_at timestamptz not null default now(),
  constraint realtime_broadcasts_pkey primary key (id)
);

create index realtime_broadcasts_created_at_idx on internal.realtime_broadcasts (created_at);

revoke all on table internal.realtime_broadcasts from public, anon, authenticated;
