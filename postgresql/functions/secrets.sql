-- The two functions that hand out a secret (reference copy; the source of
-- truth is 005_least_privilege.sql). Both are SECURITY DEFINER, owned by
-- platform_secret_reader, scoped to the current tenant by its policies, and
-- executable by one role each: user_password_hash by platform_auth (the
-- login service), dsp_connector_credentials by platform_connector (DSP sync).
CREATE OR REPLACE FUNCTION public.user_password_hash(p_email text)
    RETURNS TABLE (user_id uuid, password_hash text, status text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.id, u.password_hash::text, u.status::text
      FROM public.users u
     WHERE u.org_id = public.current_org_id()
       AND u.email = pg_catalog.lower(p_email)
$$;

-- The DSP sync path: a connector's credentials, still encrypted (the
-- connector service decrypts them with the key-encryption key it holds; see
-- platformdb.secrets), for a connector of the current tenant only.
CREATE OR REPLACE FUNCTION public.dsp_connector_credentials(p_connector_id uuid)
    RETURNS TABLE (credentials_encrypted bytea, credentials_key_id text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.credentials_encrypted, c.credentials_key_id::text
      FROM public.dsp_connectors c
     WHERE c.org_id = public.current_org_id()
       AND c.id = p_connector_id
$$;
