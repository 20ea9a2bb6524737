-- Demo data: three chamas from around Kenya, their members and a few months of contributions.
-- Loaded by `pesachama serve --demo` (and `supabase db reset` on a Supabase project).
-- Idempotent: fixed ids, `on conflict do nothing`, and contributions keyed by their reference,
-- so loading it twice changes nothing. Money goes through the ledger like any other money.
--
-- Every demo user signs in with the password `password123` (email or phone).

-- People -----------------------------------------------------------------------------------------
drop table if exists pg_temp.seed_people;
create temporary table seed_people (id uuid, email text, phone text, first_name text, last_name text, language text);
insert into seed_people values
  ('5eed0000-0000-4000-8000-000000000001', 'wanjiku.kamau@example.co.ke',   '+254712345001', 'Wanjiku',  'Kamau',    'en'),
  ('5eed0000-0000-4000-8000-000000000002', 'otieno.odhiambo@example.co.ke', '+254722345002', 'Otieno',   'Odhiambo', 'en'),
  ('5eed0000-0000-4000-8000-000000000003', 'akinyi.achieng@example.co.ke',  '+254733345003', 'Akinyi',   'Achieng',  'sw'),
  ('5eed0000-0000-4000-8000-000000000004', 'kiprono.kiptoo@example.co.ke',  '+254710345004', 'Kiprono',  'Kiptoo',   'en'),
  ('5eed0000-0000-4000-8000-000000000005', 'mwanaisha.hassan@example.co.ke','+254701345005', 'Mwanaisha','Hassan',   'sw'),
  ('5eed0000-0000-4000-8000-000000000006', 'njoroge.mwangi@example.co.ke',  '+254798345006', 'Njoroge',  'Mwangi',   'en'),
  ('5eed0000-0000-4000-8000-000000000007', null,                            '+254720345007', 'Nafula',   'Wekesa',   'sw'),
  ('5eed0000-0000-4000-8000-000000000008', 'mutua.musyoka@example.co.ke',   '+254113345008', 'Mutua',    'Musyoka',  'en'),
  ('5eed0000-0000-4000-8000-000000000009', 'chebet.langat@example.co.ke',   '+254115345009', 'Chebet',   'Langat',   'en'),
  ('5eed0000-0000-4000-8000-000000000010', null,                            '+254727345010', 'Barasa',   'Wafula',   'sw');

-- The token columns are '' and not NULL: Supabase Auth reads them into Go strings.
insert into auth.users (instance_id, id, aud, role, email, phone, encrypted_password,
                        email_confirmed_at, phone_confirmed_at, raw_app_meta_data, raw_user_meta_data,
                        confirmation_token, recovery_token, email_change_token_new, email_change,
                        created_at, updated_at)
select '00000000-0000-0000-0000-000000000000', p.id, 'authenticated', 'authenticated', p.email,
       substr(p.phone, 2), extensions.crypt('password123', extensions.gen_salt('bf', 10)),
       case when p.email is not null then now() end, now(),
       jsonb_build_object('provider', case when p.email is null then 'phone' else 'email' end,
                          'providers', jsonb_build_array(case when p.email is null then 'phone' else 'email' end)),
       jsonb_build_object('first_name', p.first_name, 'last_name', p.last_name, 'language', p.language),
       '', '', '', '',
       now() - interval '200 days', now() - interval '200 days'
  from seed_people p
on conflict (id) do nothing;

insert into auth.identities (id, user_id, provider, provider_id, identity_data, created_at, updated_at)
select p.id, p.id, case when p.email is null then 'phone' else 'email' end, p.id::text,
       jsonb_strip_nulls(jsonb_build_object('sub', p.id::text, 'email', p.email, 'phone', substr(p.phone, 2))),
       now() - interval '200 days', now() - interval '200 days'
  from seed_people p
on conflict do nothing;

insert into public.users (id, email, phone, first_name, last_name, language, created_at, updated_at)
select p.id, p.email, p.phone, p.first_name, p.last_name, p.language,
       now() - interval '200 days', now() - interval '200 days'
  from seed_people p
on conflict (id) do nothing;

-- Chamas (the creator becomes chairperson through the chamas_bootstrap trigger) ---------------------
insert into public.chamas (id, name, description, chama_type, contribution_amount, contribution_frequency,
                           paybill_account, join_code, required_approvals, created_by, created_at, updated_at)
values
  ('c4a3a000-0000-4000-8000-000000000001', 'Umoja Women Group',
   'Table banking for market traders in Gikomba', 'table_banking', 100000, 'monthly',
   'UMOJA01', 'UMOJA2024', 2, '5eed0000-0000-4000-8000-000000000001', now() - interval '180 days', now() - interval '180 days'),
  ('c4a3a000-0000-4000-8000-000000000002', 'Kisumu Boda Boda Sacco',
   'Weekly savings for motorcycle taxi riders at Kondele stage', 'savings', 50000, 'weekly',
   'KBODA02', 'BODA2024', 2, '5eed0000-0000-4000-8000-000000000002', now() - interval '150 days', now() - interval '150 days'),
  ('c4a3a000-0000-4000-8000-000000000003', 'Eldoret Merry-Go-Round',
   'Monthly merry-go-round among teachers', 'merry_go_round', 200000, 'monthly',
   'ELDMGR3', 'ELDMGR24', 1, '5eed0000-0000-4000-8000-000000000004', now() - interval '120 days', now() - interval '120 days')
on conflict (id) do nothing;

insert into public.chama_members (chama_id, user_id, role, status, joined_at, created_at, updated_at)
select m.chama_id::uuid, m.user_id::uuid, m.role, 'active', now() - interval '170 days',
       now() - interval '170 days', now() - interval '170 days'
  from (values
    ('c4a3a000-0000-4000-8000-000000000001', '5eed0000-0000-4000-8000-000000000003', 'treasurer'),
    ('c4a3a000-0000-4000-8000-000000000001', '5eed0000-0000-4000-8000-000000000005', 'secretary'),
    ('c4a3a000-0000-4000-8000-000000000001', '5eed0000-0000-4000-8000-000000000007', 'member'),
    ('c4a3a000-0000-4000-8000-000000000001', '5eed0000-0000-4000-8000-000000000009', 'member'),
    ('c4a3a000-0000-4000-8000-000000000002', '5eed0000-0000-4000-8000-000000000006', 'treasurer'),
    ('c4a3a000-0000-4000-8000-000000000002', '5eed0000-0000-4000-8000-000000000008', 'secretary'),
    ('c4a3a000-0000-4000-8000-000000000002', '5eed0000-0000-4000-8000-000000000010', 'member'),
    ('c4a3a000-0000-4000-8000-000000000002', '5eed0000-0000-4000-8000-000000000003', 'member'),
    ('c4a3a000-0000-4000-8000-000000000003', '5eed0000-0000-4000-8000-000000000009', 'treasurer'),
    ('c4a3a000-0000-4000-8000-000000000003', '5eed0000-0000-4000-8000-000000000001', 'member'),
    ('c4a3a000-0000-4000-8000-000000000003', '5eed0000-0000-4000-8000-000000000008', 'member')
  ) as m(chama_id, user_id, role)
on conflict (chama_id, user_id) do nothing;

-- Contributions: each active member, each period, through the ledger. A few members are behind.
select internal.record_contribution(
         c.id, m.user_id, c.contribution_amount,
         case when (n + ascii(substr(m.user_id::text, 36))) % 4 = 0 then 'cash' else 'mpesa' end,
         'SEED-' || left(c.id::text, 8) || '-' || right(m.user_id::text, 4) || '-' || n,
         case when (n + ascii(substr(m.user_id::text, 36))) % 4 = 0 then null
              else upper(substr(md5(c.id::text || m.user_id::text || n), 1, 10)) end,
         case when (n + ascii(substr(m.user_id::text, 36))) % 4 = 0 then null else u.phone::text end,
         'Demo contribution ' || n,
         m.user_id,
         c.created_at + (n * case c.contribution_frequency when 'weekly' then interval '7 days' else interval '30 days' end))
  from public.chamas c
  join public.chama_members m on m.chama_id = c.id and m.status = 'active'
  join public.users u on u.id = m.user_id
  cross join generate_series(1, 4) as n
 where c.id::text like 'c4a3a000-%'
   -- members join late: the last member of each chama is one period behind
   and not (n = 4 and m.role = 'member' and right(m.user_id::text, 1) in ('7', '0'))
   and not exists (select from public.transactions t
                    where t.reference = 'SEED-' || left(c.id::text, 8) || '-' || right(m.user_id::text, 4) || '-' || n)
 order by c.id, n, m.user_id;

-- A meeting ahead, one held with its register --------------------------------------------------------
insert into public.meetings (id, chama_id, title, agenda, scheduled_for, duration_minutes, venue, meeting_type,
                             agora_channel, status, created_by, created_at, updated_at)
values
  ('3ee70000-0000-4000-8000-000000000001', 'c4a3a000-0000-4000-8000-000000000001', 'Monthly meeting',
   'Contributions, table banking loans, welfare', date_trunc('day', now()) + interval '10 days 14 hours', 120,
   'Gikomba Community Hall', 'hybrid', 'umoja-monthly-next', 'scheduled',
   '5eed0000-0000-4000-8000-000000000005', now() - interval '5 days', now() - interval '5 days'),
  ('3ee70000-0000-4000-8000-000000000002', 'c4a3a000-0000-4000-8000-000000000002', 'Weekly stage meeting',
   'Savings review, new helmets', date_trunc('day', now()) - interval '3 days' + interval '18 hours', 60,
   'Kondele stage', 'physical', null, 'held',
   '5eed0000-0000-4000-8000-000000000008', now() - interval '10 days', now() - interval '2 days')
on conflict (id) do nothing;

insert into public.meeting_attendance (meeting_id, chama_id, user_id, status, checked_in_at, recorded_by)
select '3ee70000-0000-4000-8000-000000000002', 'c4a3a000-0000-4000-8000-000000000002', m.user_id,
       case when m.user_id = '5eed0000-0000-4000-8000-000000000010' then 'apologies' else 'present' end,
       case when m.user_id = '5eed0000-0000-4000-8000-000000000010' then null else now() - interval '3 days' end,
       '5eed0000-0000-4000-8000-000000000008'
  from public.chama_members m
 where m.chama_id = 'c4a3a000-0000-4000-8000-000000000002'
on conflict do nothing;

-- A withdrawal waiting for its second approval ---------------------------------------------------------
insert into public.disbursement_requests (id, chama_id, requested_by, recipient_user_id, recipient_phone, amount,
                                          reason, status, required_approvals, approvals_count, created_at, updated_at)
values ('d15b0000-0000-4000-8000-000000000001', 'c4a3a000-0000-4000-8000-000000000001',
        '5eed0000-0000-4000-8000-000000000007', '5eed0000-0000-4000-8000-000000000007', '+254720345007',
        150000, 'School fees for Form 2, second term', 'pending', 2, 1,
        now() - interval '1 day', now() - interval '1 day')
on conflict (id) do nothing;

insert into public.disbursement_approvals (request_id, chama_id, approver_id, decision, comment, created_at)
values ('d15b0000-0000-4000-8000-000000000001', 'c4a3a000-0000-4000-8000-000000000001',
        '5eed0000-0000-4000-8000-000000000003', 'approve', 'Sawa, ameweka akiba kila mwezi', now() - interval '20 hours')
on conflict do nothing;

-- Notifications --------------------------------------------------------------------------------------
insert into public.notifications (id, user_id, chama_id, type, title, body, data, sent_via, created_at)
values
  ('40710000-0000-4000-8000-000000000001', '5eed0000-0000-4000-8000-000000000001', 'c4a3a000-0000-4000-8000-000000000001',
   'approval', 'Withdrawal awaiting your approval', 'Nafula Wekesa asked for KES 1,500.00: School fees for Form 2, second term',
   '{"disbursement_request_id": "d15b0000-0000-4000-8000-000000000001"}', '{push}', now() - interval '1 day'),
  ('40710000-0000-4000-8000-000000000002', '5eed0000-0000-4000-8000-000000000007', 'c4a3a000-0000-4000-8000-000000000001',
   'meeting', 'Mkutano wa kila mwezi', 'Mkutano wa Umoja Women Group utafanyika Gikomba Community Hall',
   '{"meeting_id": "3ee70000-0000-4000-8000-000000000001"}', '{sms}', now() - interval '5 days')
on conflict (id) do nothing;

drop table pg_temp.seed_people;
