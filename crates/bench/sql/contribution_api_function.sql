-- One manual contribution exactly as POST /transactions makes it, minus HTTP: the request
-- context, then public.record_manual_contribution. Needs the demo data (the treasurer of Umoja
-- records for a member). Usage: see BENCHMARKS.md.
\set n random(1, 1000000000)
begin;
select set_config('role', 'authenticated', true),
       set_config('request.jwt.claims', '{"sub":"5eed0000-0000-4000-8000-000000000003","role":"authenticated"}', true);
select public.record_manual_contribution('c4a3a000-0000-4000-8000-000000000001',
  '5eed0000-0000-4000-8000-000000000007', 1000, 'cash', null, null, 'k' || :n || '-' || :client_id, 'h');
commit;
