-- Storage buckets and who may touch their objects (CONTRACTS §4: RLS on storage.objects is the
-- authorization; no policy, no access).
--
-- avatars    public read; a user writes only under their own folder `<user id>/...`
-- documents  private; `<chama id>/...`; members read, officials write
-- recordings private; `<chama id>/...`; members read, officials write

insert into storage.buckets (id, name, public, file_size_limit, allowed_mime_types)
values
  ('avatars', 'avatars', true, 2 * 1024 * 1024, array['image/jpeg', 'image/png', 'image/webp']),
  ('documents', 'documents', false, 20 * 1024 * 1024,
   array['application/pdf', 'image/jpeg', 'image/png', 'text/plain', 'text/csv',
         'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
         'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet']),
  ('recordings', 'recordings', false, 500 * 1024 * 1024,
   array['audio/mpeg', 'audio/mp4', 'audio/ogg', 'audio/webm', 'video/mp4', 'video/webm'])
on conflict (id) do nothing;

create policy pesachama_avatars_read on storage.objects for select to anon, authenticated
  using (bucket_id = 'avatars');
create policy pesachama_avatars_insert on storage.objects for insert to authenticated
  with check (bucket_id = 'avatars' and (storage.foldername(name))[1] = (select auth.uid())::text);
create policy pesachama_avatars_update on storage.objects for update to authenticated
  using (bucket_id = 'avatars' and (storage.foldername(name))[1] = (select auth.uid())::text)
  with check (bucket_id = 'avatars' and (storage.foldername(name))[1] = (select auth.uid())::text);
create policy pesachama_avatars_delete on storage.objects for delete to authenticated
  using (bucket_id = 'avatars' and (storage.foldername(name))[1] = (select auth.uid())::text);

create policy pesachama_chama_files_read on storage.objects for select to authenticated
  using (bucket_id in ('documents', 'recordings')
         and public.is_chama_member(public.storage_chama_id(name)));
create policy pesachama_chama_files_insert on storage.objects for insert to authenticated
  with check (bucket_id in ('documents', 'recordings')
              and public.is_chama_official(public.storage_chama_id(name)));
create policy pesachama_chama_files_update on storage.objects for update to authenticated
  using (bucket_id in ('documents', 'recordings')
         and public.is_chama_official(public.storage_chama_id(name)))
  with check (bucket_id in ('documents', 'recordings')
              and public.is_chama_official(public.storage_chama_id(name)));
create policy pesachama_chama_files_delete on storage.objects for delete to authenticated
  using (bucket_id in ('documents', 'recordings')
         and public.is_chama_official(public.storage_chama_id(name)));
