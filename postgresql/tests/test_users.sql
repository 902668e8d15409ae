-- users: bcrypt-only passwords, lower-case unique-per-org emails, updated_at
-- trigger, audit with the hash masked, tenant isolation.
-- Run: psql -h localhost -U platform -d platform_test -f postgresql/tests/test_users.sql
\set ON_ERROR_STOP on
BEGIN;

INSERT INTO organizations (id, name, slug) VALUES
    ('10000000-0000-4000-8000-000000000001', 'Users Test A', 'users-test-a'),
    ('10000000-0000-4000-8000-000000000002', 'Users Test B', 'users-test-b');
INSERT INTO users (org_id, id, email, password_hash, name, created_at, updated_at) VALUES
    ('10000000-0000-4000-8000-000000000001', '20000000-0000-4000-8000-000000000001',
     'admin@users-a.test', '$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW', 'Admin A',
     now() - interval '1 day', now() - interval '1 day');

DO $$
DECLARE
    v_refused boolean;
BEGIN
    -- a clear-text password is refused
    v_refused := false;
    BEGIN
        INSERT INTO users (org_id, email, password_hash, name)
        VALUES ('10000000-0000-4000-8000-000000000001', 'plain@users-a.test', 'hunter22', 'Plain');
    EXCEPTION WHEN check_violation THEN v_refused := true;
    END;
    ASSERT v_refused, 'a clear-text password_hash was accepted';

    -- a truncated bcrypt hash is refused
    v_refused := false;
    BEGIN
        INSERT INTO users (org_id, email, password_hash, name)
        VALUES ('10000000-0000-4000-8000-000000000001', 'short@users-a.test', '$2b$12$tooShort', 'S');
    EXCEPTION WHEN check_violation THEN v_refused := true;
    END;
    ASSERT v_refused, 'a malformed bcrypt hash was accepted';

    -- emails are stored lower-case
    v_refused := false;
    BEGIN
        INSERT INTO users (org_id, email, password_hash, name)
        VALUES ('10000000-0000-4000-8000-000000000001', 'Mixed@Users-A.test',
                '$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW', 'M');
    EXCEPTION WHEN check_violation THEN v_refused := true;
    END;
    ASSERT v_refused, 'a mixed-case email was accepted';

    -- one email per organization ...
    v_refused := false;
    BEGIN
        INSERT INTO users (org_id, email, password_hash, name)
        VALUES ('10000000-0000-4000-8000-000000000001', 'admin@users-a.test',
                '$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW', 'Dup');
    EXCEPTION WHEN unique_violation THEN v_refused := true;
    END;
    ASSERT v_refused, 'a duplicate email in one organization was accepted';
END
$$;

-- ... but the same email may exist in another organization
INSERT INTO users (org_id, id, email, password_hash, name) VALUES
    ('10000000-0000-4000-8000-000000000002', '20000000-0000-4000-8000-000000000002',
     'admin@users-a.test', '$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy', 'Admin B');

UPDATE users SET name = 'Admin A (renamed)' WHERE id = '20000000-0000-4000-8000-000000000001';

DO $$
DECLARE
    v_user users%ROWTYPE;
    v_audit audit_logs%ROWTYPE;
    v_seen bigint;
    v_masked text;
BEGIN
    SELECT * INTO v_user FROM users WHERE id = '20000000-0000-4000-8000-000000000001';
    ASSERT v_user.updated_at = now(), 'updated_at was not refreshed by the trigger';
    ASSERT v_user.created_at < v_user.updated_at, 'created_at changed';

    SELECT * INTO v_audit FROM audit_logs
     WHERE resource_type = 'users' AND resource_id = '20000000-0000-4000-8000-000000000001'
       AND action = 'UPDATE';
    ASSERT FOUND, 'the update was not audited';
    ASSERT v_audit.changed_fields = ARRAY['name'], 'changed_fields: ' || v_audit.changed_fields::text;
    ASSERT v_audit.old_values ->> 'name' = 'Admin A', 'old value missing';
    ASSERT NOT v_audit.new_values ? 'password_hash', 'unchanged columns leaked into the audit';

    SELECT new_values ->> 'password_hash' INTO STRICT v_masked FROM audit_logs
     WHERE resource_type = 'users' AND resource_id = '20000000-0000-4000-8000-000000000001'
       AND action = 'INSERT';
    ASSERT v_masked = '***', 'password_hash was written to the audit trail';

    -- as the application, tenant A sees its own user only
    SET LOCAL ROLE platform_app;
    PERFORM set_tenant('10000000-0000-4000-8000-000000000001');
    SELECT count(*) INTO v_seen FROM users;
    ASSERT v_seen = 1, format('tenant A sees %s users, expected 1', v_seen);
    SELECT count(*) INTO v_seen FROM users WHERE org_id = '10000000-0000-4000-8000-000000000002';
    ASSERT v_seen = 0, 'tenant A sees a user of tenant B';
    UPDATE users SET name = 'hijacked' WHERE org_id = '10000000-0000-4000-8000-000000000002';
    RESET ROLE;
    ASSERT (SELECT name FROM users WHERE id = '20000000-0000-4000-8000-000000000002') = 'Admin B',
        'tenant A changed a user of tenant B';
END
$$;

ROLLBACK;
