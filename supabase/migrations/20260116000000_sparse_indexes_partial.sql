-- Indexes over columns that most rows leave empty hold only the rows that fill them.
--
-- A contribution (cash or M-Pesa) writes a journal, a transactions row, a notification and
-- audit rows, and leaves these columns NULL: the reversal link of the journal and of the
-- transaction (only a reversal sets it), the transaction's recorder (only a treasurer's cash
-- entry sets it), the legacy ids (only `pesachama migrate` sets them) and the audit actor of
-- what the system does (an M-Pesa callback has no actor). Each of them was indexed in full, so
-- an M-Pesa contribution added seven entries for NULL (one for its journal, three for its
-- transactions row, one for its notification, two for its audit rows) to six indexes that no
-- query reads by NULL: the unique ones ignore NULLs, and the lookups (`where created_by = $1`, `where actor_id = $1`, a reversal
-- by its original, a foreign key's check) name a value, which a partial index on `is not null`
-- answers as before.
--
-- The unique constraints become unique indexes of the same names, so a duplicate is refused
-- with the same SQLSTATE (23505) and the same constraint name in the error as before. Nothing
-- infers them for ON CONFLICT. The legacy-id keys of users, chamas, disbursement requests and
-- meetings stay as they are: those tables take one row per member, chama or decision, not one
-- per shilling moved.

alter table internal.journals drop constraint journals_reversed_once;
create unique index journals_reversed_once on internal.journals (reverses_id)
  where reverses_id is not null;

alter table public.transactions drop constraint transactions_reversed_once;
create unique index transactions_reversed_once on public.transactions (reverses_id)
  where reverses_id is not null;

alter table public.transactions drop constraint transactions_legacy_id_key;
create unique index transactions_legacy_id_key on public.transactions (legacy_id)
  where legacy_id is not null;

drop index public.transactions_created_by_idx;
create index transactions_created_by_idx on public.transactions (created_by)
  where created_by is not null;

alter table public.notifications drop constraint notifications_legacy_id_key;
create unique index notifications_legacy_id_key on public.notifications (legacy_id)
  where legacy_id is not null;

drop index public.audit_logs_actor_id_idx;
create index audit_logs_actor_id_idx on public.audit_logs (actor_id, created_at desc)
  where actor_id is not null;
