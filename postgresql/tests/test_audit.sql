-- Audit trail: inserts, updates and deletes of tenant rows are logged with
-- who, what and what changed; secrets are masked, the secret columns and any
-- secret-looking key inside JSON values; no-op updates log nothing; the
-- application role can neither rewrite history nor forge rows, and writes
-- its own events only through log_audit_event(), which fills in who and when.
\set ON_ERROR_STOP on
BEGIN;

INSERT INTO organizations (id, name, slug)
VALUES ('13000000-0000-4000-8000-000000000001', 'Audit', 'audit-test');
INSERT INTO users (org_id, id, email, password_hash, name)
VALUES ('13000000-0000-4000-8000-000000000001', '23000000-0000-4000-8000-000000000001',
        'auditor@audit.test', '$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW', 'Auditor');

SET LOCAL ROLE platform_app;
DO $$ BEGIN
    PERFORM set_tenant('13000000-0000-4000-8000-000000000001', '23000000-0000-4000-8000-000000000001');
END $$;
-- credentials in the platformdb.secrets envelope format (header, key id, then
-- wrapped key and ciphertext; the bytes after the key id are made up here)
INSERT INTO dsp_connectors (org_id, id, name, dsp_type, credentials_encrypted, credentials_key_id,
                            config)
VALUES ('13000000-0000-4000-8000-000000000001', '33000000-0000-4000-8000-000000000001',
        'DV360', 'dv360',
        '\x5044424501'::bytea || '\x09'::bytea || convert_to('kms-key-1', 'UTF8')
            || decode(repeat('ab', 88), 'hex'),
        'kms-key-1',
        '{"region": "eu", "auth": {"API_Key": "ak-live-123", "nested": [{"refresh_token": "rt-9"}]},
          "clientSecret": "cs-1", "timeout_s": 30}');
INSERT INTO notifications (org_id, user_id, channel, template, payload)
VALUES ('13000000-0000-4000-8000-000000000001', '23000000-0000-4000-8000-000000000001', 'email',
        'password_reset', '{"subject": "Reset", "reset_token": "rst-secret", "password": "hunter2"}');
INSERT INTO campaigns (org_id, id, dsp_connector_id, name, status, budget)
VALUES ('13000000-0000-4000-8000-000000000001', '43000000-0000-4000-8000-000000000001',
        '33000000-0000-4000-8000-000000000001', 'Audited', 'draft', 100);
UPDATE campaigns SET status = 'active', budget = 250 WHERE id = '43000000-0000-4000-8000-000000000001';
UPDATE campaigns SET status = 'active' WHERE id = '43000000-0000-4000-8000-000000000001';
DELETE FROM campaigns WHERE id = '43000000-0000-4000-8000-000000000001';

DO $$
DECLARE
    v_row audit_logs%ROWTYPE;
    v_id uuid;
    v_count bigint;
    v_refused boolean := false;
BEGIN
    SELECT count(*) INTO v_count FROM audit_logs
     WHERE resource_type = 'campaigns' AND resource_id = '43000000-0000-4000-8000-000000000001';
    ASSERT v_count = 3, format('expected INSERT, UPDATE, DELETE; got %s audit rows', v_count);

    SELECT * INTO STRICT v_row FROM audit_logs
     WHERE resource_type = 'campaigns' AND action = 'UPDATE';
    ASSERT v_row.user_id = '23000000-0000-4000-8000-000000000001', 'audit row lacks the acting user';
    ASSERT v_row.changed_fields = ARRAY['budget', 'status'], 'changed: ' || v_row.changed_fields::text;
    ASSERT v_row.old_values = '{"budget": 100.00, "status": "draft"}', v_row.old_values::text;
    ASSERT v_row.new_values = '{"budget": 250.00, "status": "active"}', v_row.new_values::text;
    ASSERT v_row.org_id = current_org_id(), 'audit row in the wrong tenant';

    SELECT * INTO STRICT v_row FROM audit_logs WHERE resource_type = 'campaigns' AND action = 'DELETE';
    ASSERT v_row.old_values ->> 'name' = 'Audited' AND v_row.new_values IS NULL, 'delete not recorded';

    SELECT * INTO STRICT v_row FROM audit_logs WHERE resource_type = 'dsp_connectors';
    ASSERT v_row.new_values ->> 'credentials_encrypted' = '***', 'credentials reached the audit trail';
    ASSERT v_row.new_values -> 'config' = '{"region": "eu", "timeout_s": 30, "clientSecret": "***",
        "auth": {"API_Key": "***", "nested": [{"refresh_token": "***"}]}}'::jsonb,
        'secrets inside config reached the audit trail: ' || (v_row.new_values -> 'config')::text;
    ASSERT position('ak-live-123' IN v_row::text) = 0 AND position('rt-9' IN v_row::text) = 0,
        'a secret value is somewhere in the audit row';

    SELECT * INTO STRICT v_row FROM audit_logs WHERE resource_type = 'notifications';
    ASSERT v_row.new_values -> 'payload' = '{"subject": "Reset", "reset_token": "***",
        "password": "***"}'::jsonb, 'secrets inside a payload reached the audit trail';

    BEGIN
        UPDATE audit_logs SET action = 'FORGED';
    EXCEPTION WHEN insufficient_privilege THEN v_refused := true;
    END;
    ASSERT v_refused, 'the application could rewrite the audit trail';

    -- a back-dated row in another user's name is refused ...
    v_refused := false;
    BEGIN
        INSERT INTO audit_logs (org_id, user_id, action, resource_type, db_user, txid, created_at)
        VALUES (current_org_id(), gen_random_uuid(), 'LOGIN', 'users', 'someone_else', 1,
                now() - interval '1 year');
    EXCEPTION WHEN insufficient_privilege THEN v_refused := true;
    END;
    ASSERT v_refused, 'the application forged an audit row';

    -- ... an event goes through log_audit_event, which says who and when itself
    v_id := log_audit_event('EXPORT', 'campaigns', NULL, '{"rows": 3, "api_token": "t"}');
    SELECT * INTO STRICT v_row FROM audit_logs WHERE id = v_id;
    ASSERT v_row.user_id = current_app_user_id() AND v_row.org_id = current_org_id()
        AND v_row.db_user = session_user AND v_row.created_at = now()
        AND v_row.txid = txid_current(), 'log_audit_event did not fill in who and when';
    ASSERT v_row.new_values = '{"rows": 3, "api_token": "***"}', v_row.new_values::text;

    v_refused := false;
    BEGIN
        PERFORM log_audit_event('DELETE', 'campaigns', '43000000-0000-4000-8000-000000000001');
    EXCEPTION WHEN invalid_parameter_value THEN v_refused := true;
    END;
    ASSERT v_refused, 'log_audit_event posed as a row change';
END
$$;

-- not even the owner changes an audit row
RESET ROLE;
DO $$
DECLARE
    v_refused boolean := false;
BEGIN
    BEGIN
        UPDATE audit_logs SET action = 'FORGED';
    EXCEPTION WHEN insufficient_privilege THEN v_refused := true;
    END;
    ASSERT v_refused, 'the owner rewrote the audit trail';
END
$$;

ROLLBACK;
