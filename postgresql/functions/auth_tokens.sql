-- Token check for the login / API gateway path, which does not know the
-- tenant yet (reference copy; the source of truth is 005_least_privilege.sql):
-- given the SHA-256 of a presented token, return its tenant, user and type if
-- it is live. Runs as platform_token_validator; never returns the hash.
CREATE OR REPLACE FUNCTION public.validate_auth_token(p_token_hash text)
    RETURNS TABLE (org_id uuid, user_id uuid, token_id uuid, token_type text,
                   expires_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.org_id, t.user_id, t.id, t.token_type::text, t.expires_at
      FROM public.auth_tokens t
     WHERE t.token_hash = p_token_hash
       AND t.revoked_at IS NULL
       AND t.expires_at > pg_catalog.now()
$$;
