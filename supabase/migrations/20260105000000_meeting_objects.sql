-- Meeting minutes and recordings link to their storage objects (issue 7).
--
-- `public.meetings.minutes_object_id` and `recording_object_id` already reference
-- `storage.objects` (on delete set null). This guard makes a link mean what the buckets mean:
-- minutes are a `documents` object and a recording a `recordings` object, both in the folder of
-- the meeting's own chama. It runs for every writer, the API and direct Supabase clients alike.

create function internal.check_meeting_objects() returns trigger
  language plpgsql
  security definer
  set search_path = ''
  as $$
begin
  if new.minutes_object_id is not null
     and (tg_op = 'INSERT' or new.minutes_object_id is distinct from old.minutes_object_id)
     and not exists (select from storage.objects o
                      where o.id = new.minutes_object_id and o.bucket_id = 'documents'
                        and public.storage_chama_id(o.name) = new.chama_id) then
    raise exception 'the minutes must be a documents object in this chama''s folder (%/...)', new.chama_id
      using errcode = 'PX422';
  end if;
  if new.recording_object_id is not null
     and (tg_op = 'INSERT' or new.recording_object_id is distinct from old.recording_object_id)
     and not exists (select from storage.objects o
                      where o.id = new.recording_object_id and o.bucket_id = 'recordings'
                        and public.storage_chama_id(o.name) = new.chama_id) then
    raise exception 'the recording must be a recordings object in this chama''s folder (%/...)', new.chama_id
      using errcode = 'PX422';
  end if;
  return new;
end
$$;

revoke all on function internal.check_meeting_objects() from public;

create trigger meetings_objects_belong before insert or update of minutes_object_id, recording_object_id
  on public.meetings
  for each row execute function internal.check_meeting_objects();
