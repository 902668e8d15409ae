-- Source of the ClickHouse campaigns dictionary (reference copy; the source
-- of truth is 005_least_privilege.sql): every tenant's campaigns, keyed by
-- (org_id, id), the columns the dictionary loads and no secret. It runs with
-- its owner's rights (platform_dictionary_reader); platform_dictionary, the
-- dictionaries' role, may read it.
CREATE OR REPLACE VIEW public.dictionary_campaigns AS
SELECT c.org_id, c.id, c.name, c.status, c.currency
  FROM public.campaigns c;
