-- Notifications leave the building: every in-app notification is also queued, in the same
-- transaction, for the member's devices (push, one outbox message per device so a retry never
-- sends twice to the same phone) or, for a member with no app device and a phone number, as
-- an SMS (feature-phone members are the reason USSD exists). Meeting reminders are written by
-- the sweeper a day ahead.

create function internal.enqueue_notification() returns trigger
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_phone text;
begin
  insert into internal.outbox (topic, payload, dedupe_key)
  select 'push',
         jsonb_build_object('notification_id', new.id, 'device_id', d.id),
         'push:' || new.id || ':' || d.id
    from public.device_tokens d
   where d.user_id = new.user_id;
  if found then
    return null;
  end if;
  select u.phone into v_phone from public.users u where u.id = new.user_id;
  if v_phone is not null then
    insert into internal.outbox (topic, payload, dedupe_key)
      values ('sms',
              jsonb_build_object('to', v_phone, 'notification_id', new.id,
                                 'message', left(new.title || coalesce(': ' || new.body, ''), 459)),
              'sms:notification:' || new.id);
  end if;
  return null;
end
$$;

create trigger notifications_deliver after insert on public.notifications
  for each row execute function internal.enqueue_notification();

-- The worker records each channel a notification went out on.
create function internal.notification_sent(p_notification_id uuid, p_channel text) returns void
  language sql
  security definer
  set search_path = ''
  as $$
  update public.notifications
     set sent_via = array_append(sent_via, p_channel)
   where id = p_notification_id and not (p_channel = any (sent_via))
$$;

-- Reminders: once per meeting, to every active member, for meetings starting within the window.
alter table public.meetings add column reminded_at timestamptz;

create function internal.send_meeting_reminders(p_within interval default interval '24 hours')
  returns integer
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_meeting public.meetings;
  v_count integer := 0;
begin
  for v_meeting in
    select * from public.meetings
     where status = 'scheduled' and reminded_at is null
       and scheduled_for > now() and scheduled_for <= now() + p_within
     order by scheduled_for
     for update skip locked
  loop
    insert into public.notifications (user_id, chama_id, type, title, body, data)
    select m.user_id, v_meeting.chama_id, 'meeting', 'Meeting reminder',
           format('%s, %s (Nairobi time)%s', v_meeting.title,
                  to_char(v_meeting.scheduled_for at time zone 'Africa/Nairobi', 'Dy DD Mon YYYY HH24:MI'),
                  coalesce(' at ' || v_meeting.venue, '')),
           jsonb_build_object('meeting_id', v_meeting.id)
      from public.chama_members m
     where m.chama_id = v_meeting.chama_id and m.status = 'active';
    update public.meetings set reminded_at = now() where id = v_meeting.id;
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;

revoke all on function internal.enqueue_notification(), internal.notification_sent(uuid, text),
  internal.send_meeting_reminders(interval) from public;
grant execute on function internal.notification_sent(uuid, text),
  internal.send_meeting_reminders(interval) to service_role;
