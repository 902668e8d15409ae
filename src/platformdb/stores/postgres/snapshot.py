"""A PostgreSQL schema as a :data:`~platformdb.migrate.snapshot.Snapshot`, from the catalogues.

Covered, for every schema but the system ones and the engine's own
(``platformdb``): schemas, extensions, tables and partitioned tables (owner,
grants, row-level security enabled / forced, storage options, partition key
and bound), columns (type, NOT NULL, default, identity, generated, collation,
column grants, position, comment), constraints (definition, validated),
indexes (definition, valid), policies (command, permissive, roles, USING,
WITH CHECK), triggers (definition, enabled), functions and procedures (the
whole definition: body, SECURITY DEFINER, SET search_path and other settings,
volatility; owner, grants), views (definition, options such as
security_invoker, owner, grants), sequences, enum and domain types, default
privileges, the database's grants, and the NOLOGIN roles the schema names
(attributes and memberships).

Normalised so that only real differences count:

* the role running the comparison (the migration owner) is ``<owner>``; the
  database's name does not appear;
* monthly partitions (``<table>_yYYYYmMM`` and their ``_hN`` children, made
  by ``ensure_date_partitions`` as time goes by) are one object per level,
  ``<table>_y*m*``: which months exist is not drift, but a month that differs
  from the others (a missing RLS flag, an extra index) is, and is named;
* what a partition inherits (columns, the parent's constraints, indexes
  attached to the parent's, cloned triggers) is described once, on the parent;
* objects that belong to an extension are the extension's;
* the database's CONNECT / TEMPORARY grants to LOGIN roles are provisioning
  (service logins, the dictionaries' login), not schema.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

from platformdb.migrate.snapshot import Snapshot, merge_groups

OWNER = "<owner>"
_MONTHLY = re.compile(r"_y\d{4}m\d{2}")
_MONTH = re.compile(r"_y(?P<year>\d{4})m(?P<month>\d{2})$")

NAMESPACES = """
SELECT n.oid FROM pg_namespace n
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'platformdb', 'pg_toast')
   AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
"""
NOT_EXTENSION = ("NOT EXISTS (SELECT FROM pg_depend e WHERE e.objid = {oid} AND e.deptype = 'e'"
                 " AND e.classid = '{catalog}'::regclass)")
# The fixed fragments the catalogue queries name as {namespaces} / {not_extension_<alias>}.
FRAGMENTS = {
    "namespaces": sql.SQL(NAMESPACES),
    **{f"not_extension_{alias}": sql.SQL(NOT_EXTENSION.format(oid=f"{alias}.oid", catalog=catalog))
       for alias, catalog in (("c", "pg_class"), ("p", "pg_proc"), ("t", "pg_type"))},
}

_PRIVILEGES = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "D": "TRUNCATE",
               "x": "REFERENCES", "t": "TRIGGER", "m": "MAINTAIN", "X": "EXECUTE", "U": "USAGE",
               "C": "CREATE", "c": "CONNECT", "T": "TEMPORARY", "s": "SET", "A": "ALTER SYSTEM"}


_CAST_ARRAY = re.compile(
    r"ARRAY\[((?:\('(?:[^']|'')*'::[a-z ]+\)::[a-z ]+(?:, )?)+)\]")
_CAST_ELEMENT = re.compile(r"\(('(?:[^']|'')*'::[a-z ]+)\)::([a-z ]+)")


def normal_expression(text: str) -> str:
    """``text`` with an array of cast literals in one form: ``col IN ('a', 'b')`` on a
    varchar column deparses as ``(ARRAY['a'::character varying, ...])::text[]``, and that
    text, run again (as pg_dump's output is on restore), parses into (and deparses as)
    ``ARRAY[('a'::character varying)::text, ...]``: the same expression."""

    def one(match: re.Match[str]) -> str:
        elements = _CAST_ELEMENT.findall(match.group(1))
        targets = {target for _, target in elements}
        if len(targets) != 1:
            return match.group(0)
        return f"(ARRAY[{', '.join(value for value, _ in elements)}])::{targets.pop()}[]"

    return _CAST_ARRAY.sub(one, text)


def normal_name(name: str) -> str:
    """A relation or index name with its month replaced (``campaign_metrics_y*m*_h0``)."""
    return _MONTHLY.sub("_y*m*", name)


class _Builder:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        row = conn.execute("SELECT current_user").fetchone()
        self.me = str(row[0]) if row else ""
        self.rows: list[tuple[str, str, dict[str, str]]] = []
        self.roles: set[str] = set()
        self.relnames: dict[int, str] = {}
        """oid -> normalised schema.name of every relation in the snapshot."""
        self.actual: dict[int, str] = {}
        """oid -> schema.name as it is."""

    # ----------------------------------------------------------- helpers

    def query(self, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of ``text``, whose ``{namespaces}`` / ``{not_extension_<alias>}`` name
        the fragments above."""
        statement = sql.SQL(text).format(**FRAGMENTS)
        return [tuple(r) for r in self.conn.execute(statement, params or None).fetchall()]

    def role(self, name: str | None) -> str:
        if not name:
            return "PUBLIC"
        if name == self.me:
            return OWNER
        self.roles.add(name)
        return name

    def acl(self, items: list[str] | None, skip: set[str] | None = None) -> str:
        """``grantee: PRIVILEGE, PRIVILEGE*`` per grantee (``*``: with grant option)."""
        if items is None:
            return "(default)"
        found: dict[str, list[str]] = {}
        for item in items:
            grantee, _, rest = item.partition("=")
            grantee = grantee.strip('"')
            if skip and grantee in skip:
                continue
            privileges, _, _grantor = rest.partition("/")
            names = []
            for index, letter in enumerate(privileges):
                if letter == "*":
                    continue
                star = "*" if privileges[index + 1:index + 2] == "*" else ""
                names.append(_PRIVILEGES.get(letter, letter) + star)
            found.setdefault(self.role(grantee), []).extend(names)
        return ", ".join(f"{g}: {' '.join(sorted(p))}" for g, p in sorted(found.items()))

    def add(self, key: str, actual: str, attributes: dict[str, Any]) -> None:
        self.rows.append((key, actual, {k: "" if v is None else str(v)
                                        for k, v in attributes.items()}))

    # ----------------------------------------------------------- objects

    def schemas(self) -> None:
        for name, owner, acl, comment in self.query(
                # an explicit ACL equal to the default is the default (pg_dump writes none)
                "SELECT n.nspname, pg_get_userbyid(n.nspowner), CASE WHEN n.nspacl ="
                " acldefault('n', n.nspowner) THEN NULL ELSE n.nspacl END::text[],"
                " obj_description(n.oid, 'pg_namespace') FROM pg_namespace n"
                " WHERE n.oid IN ({namespaces})"):
            self.add(f"schema {name}", name, {"owner": self.role(owner), "grants": self.acl(acl),
                                              "comment": comment})
        for name, schema in self.query("SELECT e.extname, e.extnamespace::regnamespace::text"
                                       " FROM pg_extension e"):
            self.add(f"extension {name}", name, {"schema": schema})

    def relations(self) -> None:
        kinds = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view",
                 "S": "sequence", "f": "foreign table"}
        for (oid, schema, name, kind, persistence, rls, forced, is_partition, owner, acl,
             options, partkey, parent, bound, view, comment) in self.query(
                "SELECT c.oid, n.nspname, c.relname, c.relkind, c.relpersistence,"
                " c.relrowsecurity, c.relforcerowsecurity, c.relispartition,"
                " pg_get_userbyid(c.relowner), c.relacl::text[], c.reloptions,"
                " CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,"
                " (SELECT pn.nspname || '.' || pc.relname FROM pg_inherits i"
                "   JOIN pg_class pc ON pc.oid = i.inhparent"
                "   JOIN pg_namespace pn ON pn.oid = pc.relnamespace"
                "  WHERE i.inhrelid = c.oid AND c.relispartition),"
                " CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,"
                " CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid, true) END,"
                " obj_description(c.oid, 'pg_class')"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND n.oid IN ({namespaces})"
                " AND {not_extension_c}"):
            word = kinds[str(kind)]
            key_name = f"{schema}.{normal_name(str(name))}"
            self.relnames[int(oid)] = key_name
            self.actual[int(oid)] = f"{schema}.{name}"
            attributes: dict[str, Any] = {
                "kind": word, "owner": self.role(owner), "grants": self.acl(acl),
                "options": ", ".join(sorted(options or [])), "comment": comment,
            }
            if kind in ("r", "p"):
                attributes["rls"] = ("enabled" if rls else "disabled") + (
                    ", forced" if forced else "")
                attributes["unlogged"] = "yes" if persistence == "u" else ""
            if partkey:
                attributes["partition by"] = partkey
            if is_partition:
                attributes["partition of"] = normal_name(str(parent))
                attributes["bound"] = _bound(str(name), str(bound))
            if view is not None:
                attributes["definition"] = view
            self.add(f"{'view' if kind in ('v', 'm') else word.split()[-1]} {key_name}",
                     f"{schema}.{name}", attributes)
        self.sequences()

    def sequences(self) -> None:
        for schema, name, kind, start, increment, low, high, cycle in self.query(
                "SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart,"
                " s.seqincrement, s.seqmin, s.seqmax, s.seqcycle FROM pg_sequence s"
                " JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n"
                " ON n.oid = c.relnamespace WHERE n.oid IN ({namespaces})"):
            self.add(f"sequence parameters {schema}.{name}", f"{schema}.{name}", {
                "definition": f"{kind} start {start} increment {increment} min {low} max {high}"
                              f"{' cycle' if cycle else ''}"})

    def columns(self) -> None:
        for relid, column, kind, not_null, default, identity, generated, collation, acl, \
                comment, position in self.query(
                "SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod),"
                " a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,"
                " CASE WHEN a.attcollation <> t.typcollation THEN co.collname END,"
                " a.attacl::text[], col_description(a.attrelid, a.attnum),"
                " row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum)"
                " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                " JOIN pg_type t ON t.oid = a.atttypid"
                " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
                " LEFT JOIN pg_collation co ON co.oid = a.attcollation"
                " WHERE a.attnum > 0 AND NOT a.attisdropped AND NOT c.relispartition"
                " AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
                " AND c.relnamespace IN ({namespaces})"):
            table = self.relnames.get(int(relid))
            if table is None:
                continue
            self.add(f"column {table}.{column}", f"{self.actual[int(relid)]}.{column}", {
                "type": kind, "not null": "yes" if not_null else "", "default": default,
                "identity": identity, "generated": generated, "collation": collation,
                "grants": "" if acl is None else self.acl(acl), "comment": comment,
                "position": position})

    def constraints(self) -> None:
        for relid, name, definition, validated in self.query(
                "SELECT con.conrelid, con.conname, pg_get_constraintdef(con.oid),"
                " con.convalidated FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid"
                " WHERE con.contype <> 'n' AND con.conparentid = 0"
                " AND (NOT c.relispartition OR con.conislocal)"
                " AND c.relnamespace IN ({namespaces})"):
            table = self.relnames.get(int(relid))
            if table is None:
                continue
            self.add(f"constraint {table}.{name}", f"{self.actual[int(relid)]}.{name}", {
                "definition": normal_name(normal_expression(str(definition))),
                "validated": "yes" if validated else "no (NOT VALID)"})

    def indexes(self) -> None:
        for schema, name, relid, definition, valid, comment in self.query(
                "SELECT n.nspname, ci.relname, i.indrelid, pg_get_indexdef(i.indexrelid),"
                " i.indisvalid, obj_description(i.indexrelid, 'pg_class')"
                " FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid"
                " JOIN pg_namespace n ON n.oid = ci.relnamespace"
                " WHERE n.oid IN ({namespaces})"
                " AND NOT EXISTS (SELECT FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)"):
            table = self.relnames.get(int(relid))
            if table is None:
                continue
            self.add(f"index {schema}.{normal_name(str(name))}", f"{schema}.{name}", {
                "table": table, "definition": normal_name(normal_expression(str(definition))),
                "valid": "yes" if valid else "no (INVALID)", "comment": comment})

    def policies(self) -> None:
        commands = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}
        for relid, name, command, permissive, roles, using, check in self.query(
                "SELECT p.polrelid, p.polname, p.polcmd, p.polpermissive,"
                " ARRAY(SELECT CASE WHEN r = 0 THEN '' ELSE pg_get_userbyid(r) END"
                "       FROM unnest(p.polroles) AS r),"
                " pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)"
                " FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid"
                " WHERE c.relnamespace IN ({namespaces})"):
            table = self.relnames.get(int(relid))
            if table is None:
                continue
            self.add(f"policy {table}.{name}", f"{self.actual[int(relid)]}.{name}", {
                "command": commands.get(str(command), str(command)),
                "permissive": "PERMISSIVE" if permissive else "RESTRICTIVE",
                "roles": ", ".join(sorted(self.role(r) for r in roles)),
                "using": using, "with check": check})

    def triggers(self) -> None:
        for relid, name, definition, enabled in self.query(
                "SELECT t.tgrelid, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled"
                " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                " WHERE NOT t.tgisinternal AND t.tgparentid = 0"
                " AND c.relnamespace IN ({namespaces})"):
            table = self.relnames.get(int(relid))
            if table is None:
                continue
            states = {"O": "enabled", "D": "disabled", "R": "replica", "A": "always"}
            self.add(f"trigger {table}.{name}", f"{self.actual[int(relid)]}.{name}", {
                "definition": normal_name(str(definition)),
                "enabled": states.get(str(enabled), str(enabled))})

    def functions(self) -> None:
        for schema, name, arguments, definition, owner, acl, comment in self.query(
                "SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),"
                " pg_get_functiondef(p.oid), pg_get_userbyid(p.proowner), p.proacl::text[],"
                " obj_description(p.oid, 'pg_proc')"
                " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE p.prokind IN ('f', 'p') AND n.oid IN ({namespaces})"
                " AND {not_extension_p}"):
            signature = f"{schema}.{name}({arguments})"
            self.add(f"function {signature}", signature, {
                "definition": definition, "owner": self.role(owner), "grants": self.acl(acl),
                "comment": comment})

    def types(self) -> None:
        for schema, name, kind, detail, owner, acl in self.query(
                "SELECT n.nspname, t.typname, t.typtype,"
                " CASE WHEN t.typtype = 'e' THEN (SELECT string_agg(e.enumlabel, ', '"
                "        ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid)"
                "      ELSE format_type(t.typbasetype, t.typtypmod) END,"
                " pg_get_userbyid(t.typowner), t.typacl::text[]"
                " FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
                " WHERE t.typtype IN ('e', 'd') AND n.oid IN ({namespaces})"
                " AND {not_extension_t}"):
            self.add(f"type {schema}.{name}", f"{schema}.{name}", {
                "kind": "enum" if kind == "e" else "domain", "definition": detail,
                "owner": self.role(owner), "grants": self.acl(acl)})

    def default_privileges(self) -> None:
        kinds = {"r": "tables", "S": "sequences", "f": "functions", "T": "types", "n": "schemas"}
        for role, schema, kind, acl in self.query(
                "SELECT pg_get_userbyid(d.defaclrole), coalesce(n.nspname, '*'),"
                " d.defaclobjtype, d.defaclacl::text[] FROM pg_default_acl d"
                " LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace"):
            key = f"default privileges of {self.role(role)} in {schema} on {kinds.get(kind, kind)}"
            self.add(key, key, {"grants": self.acl(acl)})

    def database(self) -> None:
        logins = {str(r[0]) for r in self.query("SELECT rolname FROM pg_roles WHERE rolcanlogin")}
        row = self.query("SELECT pg_get_userbyid(datdba), datacl::text[] FROM pg_database"
                         " WHERE datname = current_database()")
        owner, acl = row[0]
        self.add("database", "database", {"owner": self.role(owner),
                                          "grants": self.acl(acl, skip=logins - {self.me})})

    def role_entries(self) -> None:
        names = sorted(self.roles)
        for name, login, inherit, bypass, superuser, groups in self.query(
                "SELECT r.rolname, r.rolcanlogin, r.rolinherit, r.rolbypassrls, r.rolsuper,"
                " ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g"
                "       ON g.oid = m.roleid WHERE m.member = r.oid ORDER BY 1)"
                " FROM pg_roles r WHERE r.rolname = ANY(%s)", (names,)):
            if login:
                continue  # a service login: provisioning, not schema
            self.add(f"role {name}", str(name), {
                "inherit": "yes" if inherit else "no", "bypassrls": "yes" if bypass else "",
                "superuser": "yes" if superuser else "",
                "member of": ", ".join(self.role(g) for g in groups)})

    def build(self) -> Snapshot:
        self.schemas()
        self.relations()
        self.columns()
        self.constraints()
        self.indexes()
        self.policies()
        self.triggers()
        self.functions()
        self.types()
        self.default_privileges()
        self.database()
        self.role_entries()
        return merge_groups(self.rows)


def _bound(name: str, bound: str) -> str:
    """A monthly partition's bound as the month it is named after, when it is exactly that."""
    month = _MONTH.search(name)
    if month is not None and f"FROM ('{month['year']}-{month['month']}-01" in bound:
        return "FOR VALUES FROM (its month's first day) TO (the next month's first day)"
    return bound


def snapshot(conn: psycopg.Connection[Any]) -> Snapshot:
    """The schema of ``conn``'s database (read only; a few catalogue queries)."""
    with conn.transaction():
        return _Builder(conn).build()
