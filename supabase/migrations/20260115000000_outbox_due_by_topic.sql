-- Due outbox messages found by topic.
--
-- Every worker claims only its own topics: the M-Pesa worker `mpesa.stk_push` (and the payout
-- topics when payouts are set up), the delivery worker `sms`, `push` and `email`. The only index
-- of due messages was ordered by `run_after` across all topics, so a claim read past every due
-- message of the other topics to find none of its own. On the STK benchmark (BENCHMARKS.md,
-- 2026-12-02, evening) the M-Pesa worker's claim read the whole backlog of members' SMS receipts
-- that no SMS worker was taking there: 8 ms a round, 6 % of the database's time. A worker whose
-- provider is down, and so leaves a backlog, slowed every other worker in the same way.
--
-- Claims now read each topic's due messages from this index, oldest first, and take the oldest
-- of those (crates/store/src/outbox.rs).
create index outbox_due_by_topic_idx on internal.outbox (topic, run_after, id)
  where status = 'pending';
drop index internal.outbox_due_idx;
