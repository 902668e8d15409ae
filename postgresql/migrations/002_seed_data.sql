-- 002_seed_data: reference data every environment needs, and nothing else —
-- the permission catalogue and what each system role may do. Development and
-- demo data live in postgresql/seed/ (`platformdb seed test|demo|load`).
--
-- Permissions are `resource:action`. The system roles, from most to least
-- powerful: owner (everything, including deleting the organization), admin
-- (everything but the organization's deletion and billing), campaign_manager
-- (campaigns, connectors' read, reports), analyst (read and export reports),
-- viewer (read-only). Idempotent: re-running adds what is missing.
INSERT INTO public.permissions (code, resource, action, description)
SELECT v.resource || ':' || v.action, v.resource, v.action, v.description
  FROM (VALUES
    ('organizations', 'read',   'View the organization and its settings'),
    ('organizations', 'update', 'Change the organization''s name and settings'),
    ('organizations', 'delete', 'Delete the organization and all its data'),
    ('organizations', 'billing', 'Manage billing and plan'),
    ('users',         'read',   'List users and their roles'),
    ('users',         'invite', 'Invite new users'),
    ('users',         'update', 'Change users'' details and status'),
    ('users',         'delete', 'Remove users'),
    ('roles',         'assign', 'Grant and revoke roles'),
    ('dsp_connectors', 'read',   'View DSP connectors (never their credentials)'),
    ('dsp_connectors', 'create', 'Connect a DSP'),
    ('dsp_connectors', 'update', 'Change a connector and its credentials'),
    ('dsp_connectors', 'delete', 'Disconnect a DSP'),
    ('dsp_connectors', 'sync',   'Trigger a connector sync'),
    ('campaigns',     'read',   'View campaigns'),
    ('campaigns',     'create', 'Create campaigns'),
    ('campaigns',     'update', 'Edit campaigns'),
    ('campaigns',     'delete', 'Delete campaigns'),
    ('campaigns',     'launch', 'Launch, pause and resume campaigns on the DSP'),
    ('reports',       'read',   'View performance reports'),
    ('reports',       'export', 'Export report data'),
    ('etl_jobs',      'read',   'View import and sync jobs'),
    ('etl_jobs',      'manage', 'Retry and cancel jobs'),
    ('notifications', 'read',   'Read notifications'),
    ('notifications', 'manage', 'Manage notification channels'),
    ('audit_logs',    'read',   'Read the audit trail'),
    ('api_keys',      'manage', 'Create and revoke API keys')
  ) AS v (resource, action, description)
ON CONFLICT (code) DO NOTHING;

INSERT INTO public.role_permissions (role, permission_id)
SELECT g.role, p.id
  FROM (VALUES
    ('owner', '%'),
    ('admin', 'organizations:read'), ('admin', 'organizations:update'),
    ('admin', 'users:%'), ('admin', 'roles:%'), ('admin', 'dsp_connectors:%'),
    ('admin', 'campaigns:%'), ('admin', 'reports:%'), ('admin', 'etl_jobs:%'),
    ('admin', 'notifications:%'), ('admin', 'audit_logs:%'), ('admin', 'api_keys:%'),
    ('campaign_manager', 'organizations:read'), ('campaign_manager', 'users:read'),
    ('campaign_manager', 'dsp_connectors:read'), ('campaign_manager', 'dsp_connectors:sync'),
    ('campaign_manager', 'campaigns:%'), ('campaign_manager', 'reports:%'),
    ('campaign_manager', 'etl_jobs:read'), ('campaign_manager', 'notifications:read'),
    ('analyst', 'organizations:read'), ('analyst', 'campaigns:read'), ('analyst', 'reports:%'),
    ('analyst', 'dsp_connectors:read'), ('analyst', 'notifications:read'),
    ('viewer', 'organizations:read'), ('viewer', 'campaigns:read'), ('viewer', 'reports:read'),
    ('viewer', 'notifications:read')
  ) AS g (role, pattern)
  JOIN public.permissions p ON p.code LIKE g.pattern
ON CONFLICT (role, permission_id) DO NOTHING;
