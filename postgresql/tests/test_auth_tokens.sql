-- auth_tokens: only hashes are stored, and validate_auth_token finds a live
-- token's tenant without a tenant context, never a revoked or expired one.
\set ON_ERROR_STOP on
BEGIN;

INSERT INTO organizations (id, name, slug)
VALUES ('15000000-0000-4000-8000-000000000001', 'Tokens', 'tokens-test');
INSERT INTO users (org_id, id, email, password_hash, name)
VALUES ('15000000-0000-4000-8000-000000000001', '25000000-0000-4000-8000-000000000001',
        'token@tokens.test', '$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW', 'T');
INSERT INTO auth_tokens (org_id, user_id, token_type, token_hash, expires_at, revoked_at, created_at)
VALUES ('15000000-0000-4000-8000-000000000001', '25000000-0000-4000-8000-000000000001', 'access',
        encode(sha256('live-token'), 'hex'), now() + interval '1 hour', NULL, now()),
       ('15000000-0000-4000-8000-000000000001', '25000000-0000-4000-8000-000000000001', 'refresh',
        encode(sha256('revoked-token'), 'hex'), now() + interval '1 day', now(), now()),
       ('15000000-0000-4000-8000-000000000001', '25000000-0000-4000-8000-000000000001', 'access',
        encode(sha256('expired-token'), 'hex'), now() - interval '1 hour', NULL,
        now() - interval '2 hours');

DO $$
DECLARE
    v_refused boolean := false;
    v_org uuid;
BEGIN
    BEGIN
        INSERT INTO auth_tokens (org_id, user_id, token_type, token_hash, expires_at)
        VALUES ('15000000-0000-4000-8000-000000000001', '25000000-0000-4000-8000-000000000001',
                'access', 'plain-token-value', now() + interval '1 hour');
    EXCEPTION WHEN check_violation THEN v_refused := true;
    END;
    ASSERT v_refused, 'a token that is not a SHA-256 hex digest was stored';

    SET LOCAL ROLE platform_app;  -- no tenant set
    SELECT org_id INTO v_org FROM validate_auth_token(encode(sha256('live-token'), 'hex'));
    ASSERT v_org = '15000000-0000-4000-8000-000000000001', 'a live token was not found';
    ASSERT NOT EXISTS (SELECT FROM validate_auth_token(encode(sha256('revoked-token'), 'hex'))),
        'a revoked token validated';
    ASSERT NOT EXISTS (SELECT FROM validate_auth_token(encode(sha256('expired-token'), 'hex'))),
        'an expired token validated';
    ASSERT NOT EXISTS (SELECT FROM auth_tokens), 'the app read tokens without a tenant';
    RESET ROLE;
END
$$;

ROLLBACK;
