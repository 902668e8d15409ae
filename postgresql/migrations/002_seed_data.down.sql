-- Undo 002_seed_data: remove the reference catalogue (role mappings go with
-- their permissions through ON DELETE CASCADE).
DELETE FROM public.role_permissions;
DELETE FROM public.permissions;
