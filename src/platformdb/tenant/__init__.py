"""One org's data outside the stores: the tenant archive format (:mod:`.archive`).

What each store holds of an org, and how it is exported, deleted and imported,
is the store's own business (``stores/<store>/tenant.py``); the operations
across every store are :mod:`platformdb.ops.tenant`.
"""
