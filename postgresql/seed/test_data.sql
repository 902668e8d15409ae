-- Test data: the spec's small dataset, for development and tests.
--   1 organization "Test Organization"
--   2 users: admin@test.com (owner + admin), user@test.com (campaign_manager)
--   1 DSP connector "Test DV360", 1 campaign "Test Campaign Q1 2026"
--   the default permissions and roles (002_seed_data.sql, checked here)
-- Passwords (development only, bcrypt-hashed below): admin@test.com
-- "Admin#Test2026", user@test.com "User#Test2026".
-- The connector's credentials are encrypted with platformdb.secrets under
-- the public development key "dev-seed-2026" (platformdb.seed.DEV_SECRET_KEYS,
-- never for production): {"client_id": "test-dv360-client", "client_secret":
-- "dev-only-not-a-secret", "refresh_token": "dev-only-refresh-token"}.
--
-- Run: psql -h localhost -U platform -d platform_dev -v ON_ERROR_STOP=1 -f postgresql/seed/test_data.sql
-- or:  ./scripts/seed.sh test. Idempotent (fixed ids, ON CONFLICT DO NOTHING),
-- one transaction, and it sets the tenant itself so it also works for an
-- owner that row-level security applies to.
\set ON_ERROR_STOP on
BEGIN;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM role_permissions WHERE role = 'admin') THEN
        RAISE EXCEPTION 'the default permissions and roles are missing; run the migrations first'
            USING HINT = './scripts/migrate.sh up';
    END IF;
END
$$;

DO $$ BEGIN PERFORM set_tenant('7e570000-0000-4000-8000-000000000001'); END $$;

INSERT INTO organizations (id, name, slug, status)
VALUES ('7e570000-0000-4000-8000-000000000001', 'Test Organization', 'test-organization', 'active')
ON CONFLICT (id) DO NOTHING;

INSERT INTO users (org_id, id, email, password_hash, name, status) VALUES
    ('7e570000-0000-4000-8000-000000000001', '7e570000-0000-4000-8001-000000000001',
     'admin@test.com', '$2b$12$yFOdNw6VyDky2Yc7oSGEwO5JuODCCz0PHAG9h5.Eevfuf1MXYRTyy',
     'Test Admin', 'active'),
    ('7e570000-0000-4000-8000-000000000001', '7e570000-0000-4000-8001-000000000002',
     'user@test.com', '$2b$12$E7yh.pRWVSnL4I5UEHmkce3yknJz0wKhpHfPaWxyVEKyc.CyjrGl6',
     'Test User', 'active')
ON CONFLICT (org_id, id) DO NOTHING;

INSERT INTO user_roles (org_id, user_id, role, granted_by) VALUES
    ('7e570000-0000-4000-8000-000000000001', '7e570000-0000-4000-8001-000000000001', 'owner', NULL),
    ('7e570000-0000-4000-8000-000000000001', '7e570000-0000-4000-8001-000000000001', 'admin', NULL),
    ('7e570000-0000-4000-8000-000000000001', '7e570000-0000-4000-8001-000000000002',
     'campaign_manager', '7e570000-0000-4000-8001-000000000001')
ON CONFLICT (org_id, user_id, role) DO NOTHING;

INSERT INTO dsp_connectors (org_id, id, name, dsp_type, status, external_account_id, config,
                            credentials_encrypted, credentials_key_id)
VALUES ('7e570000-0000-4000-8000-000000000001', '7e570000-0000-4000-8002-000000000001',
        'Test DV360', 'dv360', 'active', 'partners/1234/advertisers/5678',
        '{"timezone": "UTC", "sync_interval_minutes": 60}',
        decode('50444245010d6465762d736565642d323032365e815e3a977c521ba3f9399aee9183b2601428fd90'
               '68ecd545d4a2ded95aaf64b1c589494916ba9cff11711fc6f5b417549db043d48230013f4c6bae8b'
               '80e578a3c92b54d21a0135c2386a23f4b92ff1dd37d46c917f5fa0407a792a913f521353caa49fba'
               '4e64c8d1e19cd9ff4936536e8baa5dc351d0e7d9c4d39f0b545128d2b72d017ce5a0a70944034e03'
               '1715bb54c9b3d141f65cccbb21c721973c78d2c9e51e27eea21b380436951ce78562c75eb7595dfe'
               'edbc4cc4c2a6d0d1347f7d374cc05024de3d51a7dafe0def2056', 'hex'),
        'dev-seed-2026')
ON CONFLICT (org_id, id) DO NOTHING;

INSERT INTO campaigns (org_id, id, dsp_connector_id, external_id, name, objective, status, budget,
                       budget_type, currency, start_date, end_date, created_by)
VALUES ('7e570000-0000-4000-8000-000000000001', '7e570000-0000-4000-8003-000000000001',
        '7e570000-0000-4000-8002-000000000001', 'io-0001', 'Test Campaign Q1 2026', 'awareness',
        'active', 50000.00, 'lifetime', 'USD', '2026-01-01', '2026-03-31',
        '7e570000-0000-4000-8001-000000000001')
ON CONFLICT (org_id, id) DO NOTHING;

COMMIT;
