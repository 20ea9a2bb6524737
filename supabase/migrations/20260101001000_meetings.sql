-- Meetings: a video channel for virtual and hybrid meetings, and the members told when a
-- meeting is scheduled, moved or cancelled, in the same transaction (also when an official
-- writes the row directly through Supabase).

create function internal.on_meeting_written() returns trigger
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_title text;
  v_body text;
begin
  if tg_op = 'INSERT' then
    v_title := 'Meeting scheduled';
  elsif new.status = 'cancelled' and old.status <> 'cancelled' then
    v_title := 'Meeting cancelled';
  elsif new.scheduled_for <> old.scheduled_for or new.venue is distinct from old.venue then
    v_title := 'Meeting moved';
  else
    return null;
  end if;
  v_body := format('%s, %s (Nairobi time)%s', new.title,
                   to_char(new.scheduled_for at time zone 'Africa/Nairobi', 'Dy DD Mon YYYY HH24:MI'),
                   coalesce(' at ' || new.venue, ''));
  insert into public.notifications (user_id, chama_id, type, title, body, data)
  select m.user_id, new.chama_id, 'meeting', v_title, v_body, jsonb_build_object('meeting_id', new.id)
    from public.chama_members m
   where m.chama_id = new.chama_id and m.status = 'active'
     and m.user_id is distinct from auth.uid();
  return null;
end
$$;

create trigger meetings_notify after insert or update on public.meetings
  for each row execute function internal.on_meeting_written();

-- Virtual and hybrid meetings get their Agora channel when they are created or switched.
create function internal.meeting_channel() returns trigger
  language plpgsql
  set search_path = ''
  as $$
begin
  if new.meeting_type in ('virtual', 'hybrid') and new.agora_channel is null then
    new.agora_channel := 'chama-' || replace(new.id::text, '-', '');
  end if;
  return new;
end
$$;

create trigger meetings_channel before insert or update of meeting_type on public.meetings
  for each row execute function internal.meeting_channel();
