-- Audit trail: inserts, updates and deletes of tenant rows are logged with
-- who, what and what changed; secrets are masked; no-op updates log nothing;
-- the application role cannot rewrite history.
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
INSERT INTO dsp_connectors (org_id, id, name, dsp_type, credentials_encrypted, credentials_key_id)
VALUES ('13000000-0000-4000-8000-000000000001', '33000000-0000-4000-8000-000000000001',
        'DV360', 'dv360', decode(repeat('ab', 40), 'hex'), 'kms-key-1');
INSERT INTO campaigns (org_id, id, dsp_connector_id, name, status, budget)
VALUES ('13000000-0000-4000-8000-000000000001', '43000000-0000-4000-8000-000000000001',
        '33000000-0000-4000-8000-000000000001', 'Audited', 'draft', 100);
UPDATE campaigns SET status = 'active', budget = 250 WHERE id = '43000000-0000-4000-8000-000000000001';
UPDATE campaigns SET status = 'active' WHERE id = '43000000-0000-4000-8000-000000000001';
DELETE FROM campaigns WHERE id = '43000000-0000-4000-8000-000000000001';

DO $$
DECLARE
    v_row audit_logs%ROWTYPE;
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

    BEGIN
        UPDATE audit_logs SET action = 'FORGED';
    EXCEPTION WHEN insufficient_privilege THEN v_refused := true;
    END;
    ASSERT v_refused, 'the application could rewrite the audit trail';
END
$$;

ROLLBACK;
