-- The ledger part alone: internal.record_contribution (journal, postings, balances, the
-- transactions row, audit), without the caller checks, idempotency and notification.
begin;
select internal.record_contribution('c4a3a000-0000-4000-8000-000000000001',
  '5eed0000-0000-4000-8000-000000000007', 1000, 'cash');
commit;
