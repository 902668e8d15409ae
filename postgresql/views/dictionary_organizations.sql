-- Source of the ClickHouse organizations dictionary (reference copy; the
-- source of truth is 005_least_privilege.sql): every tenant's organizations,
-- the columns the dictionary loads and no secret. It runs with its owner's
-- rights (platform_dictionary_reader: exactly these columns and a read policy
-- across tenants); platform_dictionary, the dictionaries' role, may read it.
CREATE OR REPLACE VIEW public.dictionary_organizations AS
SELECT o.id, o.name, o.slug, o.status
  FROM public.organizations o;
