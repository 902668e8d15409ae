-- Row-level security: with a tenant set, the application sees and writes its
-- own rows only; with none, nothing at all; a row for another tenant is
-- refused; composite foreign keys stop cross-tenant references even for the
-- owner.
\set ON_ERROR_STOP on
BEGIN;

INSERT INTO organizations (id, name, slug) VALUES
    ('11000000-0000-4000-8000-000000000001', 'Tenancy A', 'tenancy-a'),
    ('11000000-0000-4000-8000-000000000002', 'Tenancy B', 'tenancy-b');
INSERT INTO dsp_connectors (org_id, id, name, dsp_type, status) VALUES
    ('11000000-0000-4000-8000-000000000001', '31000000-0000-4000-8000-000000000001', 'DV360 A', 'dv360', 'active'),
    ('11000000-0000-4000-8000-000000000002', '31000000-0000-4000-8000-000000000002', 'DV360 B', 'dv360', 'active');
INSERT INTO campaigns (org_id, id, dsp_connector_id, name, status, budget) VALUES
    ('11000000-0000-4000-8000-000000000001', '41000000-0000-4000-8000-000000000001',
     '31000000-0000-4000-8000-000000000001', 'Campaign A', 'active', 1000),
    ('11000000-0000-4000-8000-000000000002', '41000000-0000-4000-8000-000000000002',
     '31000000-0000-4000-8000-000000000002', 'Campaign B', 'active', 2000);

DO $$
DECLARE
    v_count bigint;
    v_refused boolean := false;
BEGIN
    -- the owner cannot point a campaign at another tenant's connector
    BEGIN
        INSERT INTO campaigns (org_id, dsp_connector_id, name)
        VALUES ('11000000-0000-4000-8000-000000000001', '31000000-0000-4000-8000-000000000002', 'X');
    EXCEPTION WHEN foreign_key_violation THEN v_refused := true;
    END;
    ASSERT v_refused, 'a campaign referenced another tenant''s connector';

    SET LOCAL ROLE platform_app;

    -- no tenant: nothing visible, nothing writable
    SELECT count(*) INTO v_count FROM campaigns;
    ASSERT v_count = 0, format('without a tenant the app sees %s campaigns', v_count);
    v_refused := false;
    BEGIN
        INSERT INTO campaigns (org_id, name) VALUES ('11000000-0000-4000-8000-000000000001', 'Y');
    EXCEPTION WHEN insufficient_privilege THEN v_refused := true;
    END;
    ASSERT v_refused, 'without a tenant the app could insert a campaign';

    -- tenant A
    PERFORM set_tenant('11000000-0000-4000-8000-000000000001');
    SELECT count(*) INTO v_count FROM campaigns;
    ASSERT v_count = 1, format('tenant A sees %s campaigns, expected 1', v_count);
    SELECT count(*) INTO v_count FROM campaign_performance WHERE org_id <> current_org_id();
    ASSERT v_count = 0, 'the campaign_performance view leaks another tenant';
    SELECT count(*) INTO v_count FROM organizations;
    ASSERT v_count = 1, 'tenant A sees other organizations';
    UPDATE campaigns SET budget = 0 WHERE org_id = '11000000-0000-4000-8000-000000000002';
    DELETE FROM campaigns WHERE org_id = '11000000-0000-4000-8000-000000000002';
    v_refused := false;
    BEGIN
        INSERT INTO campaigns (org_id, name) VALUES ('11000000-0000-4000-8000-000000000002', 'Z');
    EXCEPTION WHEN insufficient_privilege THEN v_refused := true;
    END;
    ASSERT v_refused, 'tenant A inserted a campaign for tenant B';
    v_refused := false;
    BEGIN
        UPDATE campaigns SET org_id = '11000000-0000-4000-8000-000000000002'
         WHERE id = '41000000-0000-4000-8000-000000000001';
    EXCEPTION WHEN insufficient_privilege THEN v_refused := true;
    END;
    ASSERT v_refused, 'tenant A moved a campaign to tenant B';

    -- the audit trail is append-only for the application
    v_refused := false;
    BEGIN
        DELETE FROM audit_logs;
    EXCEPTION WHEN insufficient_privilege THEN v_refused := true;
    END;
    ASSERT v_refused, 'the app role could delete audit rows';
    RESET ROLE;

    SELECT count(*) INTO v_count FROM campaigns
     WHERE org_id = '11000000-0000-4000-8000-000000000002' AND budget = 2000;
    ASSERT v_count = 1, 'tenant B''s campaign was changed by tenant A';
END
$$;

ROLLBACK;
