-- Effective permissions of each user (role assignments through the role
-- catalogue), for authorization checks: `SELECT 1 FROM user_permissions WHERE
-- user_id = $1 AND permission = 'campaigns:update'`. Runs with the caller's
-- rights, so it is tenant-scoped like user_roles.
CREATE OR REPLACE VIEW public.user_permissions
    WITH (security_invoker = true) AS
SELECT ur.org_id,
       ur.user_id,
       ur.role,
       p.code AS permission
  FROM public.user_roles ur
  JOIN public.role_permissions rp ON rp.role = ur.role
  JOIN public.permissions p ON p.id = rp.permission_id;
