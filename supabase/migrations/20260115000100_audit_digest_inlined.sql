-- The audit digest, inlined where it is called.
--
-- 20260110000000 made internal.audit_digest PL/pgSQL, so that it was no longer parsed again on
-- every call as a non-inlinable SQL function was. A statement's audit calls it once per entry,
-- and the PL/pgSQL call itself was then most of its cost: 4.8 us of which the hash and its input
-- were 1.1 (STK benchmark, BENCHMARKS.md, 2026-12-02, evening). As a SQL function that
-- PostgreSQL can inline (one expression, no SET clause, not SECURITY DEFINER, and STABLE like
-- the concat_ws and to_char it calls), the expression takes the call's place in the caller's
-- plan, with no call at all. The chain checks in internal.verify_audit_chain use it the same way.
--
-- The digest is the same, byte for byte: the same fields, separator and formats, so every hash
-- already stored still verifies. Every name is schema-qualified, since an inlined body is read
-- with the caller's search_path.
create or replace function internal.audit_digest(
  p_prev_hash text, p_chain_key text, p_chain_seq bigint, p_action text, p_table_name text,
  p_record_id text, p_chama_id uuid, p_actor_id uuid, p_actor_role text, p_old_row jsonb,
  p_new_row jsonb, p_metadata jsonb, p_created_at timestamptz)
  returns text
  language sql
  stable
  as $$
select pg_catalog.encode(extensions.digest(
    pg_catalog.concat_ws(E'\x1f',
      p_prev_hash, p_chain_key, p_chain_seq::pg_catalog.text, p_action, coalesce(p_table_name, ''),
      coalesce(p_record_id, ''), coalesce(p_chama_id::pg_catalog.text, ''),
      coalesce(p_actor_id::pg_catalog.text, ''), coalesce(p_actor_role, ''),
      coalesce(p_old_row::pg_catalog.text, ''), coalesce(p_new_row::pg_catalog.text, ''),
      coalesce(p_metadata::pg_catalog.text, ''),
      pg_catalog.to_char(p_created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
    'sha256'), 'hex')
$$;
