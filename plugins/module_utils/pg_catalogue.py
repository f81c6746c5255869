# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""A canonical catalogue of a PostgreSQL database's schema, and the comparison of two catalogues.

A dump that lost an index, a constraint, a trigger or a function restores without an error and
with every row; only comparing the restored schema with the source's finds it. The backup program
reads the catalogue in the dump's snapshot and stores it in the manifest; backup_verify reads it
again from the restored scratch database and compares.

Canonical form: one entry per object, {"kind", "name", "definition"}. Names are SQL identifiers as
quote_ident() writes them (so a report can be pasted into psql); the public schema, which every new database has, is
not listed itself. Definitions come from
PostgreSQL's own pg_get_*def() functions, read with an empty search_path so that every name in
them is schema-qualified the same way on both sides. Owners, privileges and comments are not part
of the schema compared here: verification restores with --no-owner --no-privileges, so that a
drill host needs none of the production roles. Sequence values change outside transactions, so they
are kept apart from the digest and checked against the data instead (sequence_problems()).
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import re

CATALOGUE_VERSION = 2

# Every kind an entry can have; backup_verify's ignore_kinds option accepts these.
KINDS = ("extension", "schema", "type", "table", "column", "constraint", "index", "sequence", "view",
         "materialized view", "function", "trigger", "large objects", "row security", "policy")
# The catalogue version that first lists a kind; older catalogues are not compared in it.
_KIND_SINCE = {"row security": 2, "policy": 2}

_USER_NAMESPACES = """
    SELECT n.oid, n.nspname FROM pg_catalog.pg_namespace n
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
      AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
"""
# Objects created by CREATE EXTENSION belong to the extension's version, compared as one entry.
_EXTENSION_MEMBERS = "SELECT objid FROM pg_catalog.pg_depend WHERE deptype = 'e' AND classid = {0}::regclass"

_RELATION_KINDS = {"r": "table", "p": "table", "f": "table", "v": "view", "m": "materialized view", "S": "sequence"}

_QUERIES = {
    "extension": """
        SELECT 'extension', quote_ident(e.extname), 'version ' || e.extversion || ' schema ' || quote_ident(n.nspname)
        FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace""",
    "schema": f"""
        SELECT 'schema', quote_ident(nspname), '' FROM ({_USER_NAMESPACES}) ns WHERE nspname <> 'public'""",
    "type": f"""
        SELECT 'type', quote_ident(ns.nspname) || '.' || quote_ident(t.typname),
               CASE t.typtype
                 WHEN 'e' THEN 'enum (' || (SELECT string_agg(quote_literal(enumlabel), ', ' ORDER BY enumsortorder)
                                            FROM pg_catalog.pg_enum WHERE enumtypid = t.oid) || ')'
                 WHEN 'd' THEN 'domain ' || pg_catalog.format_type(t.typbasetype, t.typtypmod)
                               || CASE WHEN t.typnotnull THEN ' not null' ELSE '' END
                               || coalesce(' default ' || t.typdefault, '')
                 WHEN 'r' THEN 'range of ' || (SELECT pg_catalog.format_type(rngsubtype, NULL)
                                               FROM pg_catalog.pg_range WHERE rngtypid = t.oid)
                 ELSE 'composite (' || (SELECT string_agg(quote_ident(a.attname) || ' '
                                                          || pg_catalog.format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
                                        FROM pg_catalog.pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0
                                          AND NOT a.attisdropped) || ')'
               END
        FROM pg_catalog.pg_type t JOIN ({_USER_NAMESPACES}) ns ON ns.oid = t.typnamespace
        WHERE (t.typtype IN ('e', 'd', 'r')
               OR (t.typtype = 'c' AND (SELECT relkind FROM pg_catalog.pg_class WHERE oid = t.typrelid) = 'c'))
          AND t.oid NOT IN ({_EXTENSION_MEMBERS.format("'pg_catalog.pg_type'")})""",
    "relation": f"""
        SELECT c.relkind, quote_ident(ns.nspname) || '.' || quote_ident(c.relname),
               CASE c.relkind
                 WHEN 'v' THEN pg_catalog.pg_get_viewdef(c.oid)
                 WHEN 'm' THEN pg_catalog.pg_get_viewdef(c.oid)
                 WHEN 'S' THEN (SELECT 'as ' || pg_catalog.format_type(s.seqtypid, NULL) || ' start ' || s.seqstart
                                       || ' increment ' || s.seqincrement || ' min ' || s.seqmin || ' max ' || s.seqmax
                                       || ' cache ' || s.seqcache || CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END
                                FROM pg_catalog.pg_sequence s WHERE s.seqrelid = c.oid)
                 ELSE concat_ws(' ',
                        CASE c.relpersistence WHEN 'u' THEN 'unlogged' END,
                        CASE c.relkind WHEN 'p' THEN 'partitioned by ' || pg_catalog.pg_get_partkeydef(c.oid)
                                       WHEN 'f' THEN 'foreign' END,
                        CASE WHEN c.relispartition THEN 'partition ' || pg_catalog.pg_get_expr(c.relpartbound, c.oid) END,
                        (SELECT 'inherits ' || string_agg(p.oid::regclass::text, ', ' ORDER BY i.inhseqno)
                         FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
                         WHERE i.inhrelid = c.oid))
               END
        FROM pg_catalog.pg_class c JOIN ({_USER_NAMESPACES}) ns ON ns.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S')
          AND c.oid NOT IN ({_EXTENSION_MEMBERS.format("'pg_catalog.pg_class'")})""",
    "column": f"""
        SELECT 'column', quote_ident(ns.nspname) || '.' || quote_ident(c.relname) || '.' || quote_ident(a.attname),
               concat_ws(' ', pg_catalog.format_type(a.atttypid, a.atttypmod),
                         CASE WHEN a.attcollation <> t.typcollation
                              THEN 'collate ' || (SELECT quote_ident(collname) FROM pg_catalog.pg_collation
                                                  WHERE oid = a.attcollation) END,
                         CASE WHEN a.attnotnull THEN 'not null' END,
                         CASE a.attidentity WHEN 'a' THEN 'generated always as identity'
                                            WHEN 'd' THEN 'generated by default as identity' END,
                         CASE WHEN a.attgenerated = 's' THEN 'generated always as ('
                                   || pg_catalog.pg_get_expr(d.adbin, d.adrelid) || ') stored'
                              WHEN d.adbin IS NOT NULL THEN 'default ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid) END)
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        JOIN ({_USER_NAMESPACES}) ns ON ns.oid = c.relnamespace
        JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relkind IN ('r', 'p', 'f') AND a.attnum > 0 AND NOT a.attisdropped
          AND c.oid NOT IN ({_EXTENSION_MEMBERS.format("'pg_catalog.pg_class'")})""",
    "constraint": f"""
        SELECT 'constraint',
               quote_ident(ns.nspname) || '.' || quote_ident(coalesce(c.relname, t.typname)) || '.' || quote_ident(k.conname),
               pg_catalog.pg_get_constraintdef(k.oid)
        FROM pg_catalog.pg_constraint k
        JOIN ({_USER_NAMESPACES}) ns ON ns.oid = k.connamespace
        LEFT JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
        LEFT JOIN pg_catalog.pg_type t ON t.oid = k.contypid
        WHERE k.conparentid = 0
          AND k.oid NOT IN ({_EXTENSION_MEMBERS.format("'pg_catalog.pg_constraint'")})
          AND coalesce(k.conrelid, 0) NOT IN ({_EXTENSION_MEMBERS.format("'pg_catalog.pg_class'")})
          AND coalesce(k.contypid, 0) NOT IN ({_EXTENSION_MEMBERS.format("'pg_catalog.pg_type'")})""",
    "index": f"""
        SELECT 'index', quote_ident(ns.nspname) || '.' || quote_ident(c.relname), pg_catalog.pg_get_indexdef(c.oid)
        FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
        JOIN ({_USER_NAMESPACES}) ns ON ns.oid = c.relnamespace
        WHERE NOT c.relispartition AND i.indrelid NOT IN ({_EXTENSION_MEMBERS.format("'pg_catalog.pg_class'")})""",
    "function": f"""
        SELECT 'function',
               quote_ident(ns.nspname) || '.' || quote_ident(p.proname) || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
               CASE WHEN p.prokind = 'a'
                    THEN 'aggregate returns ' || pg_catalog.format_type(p.prorettype, NULL)
                    ELSE pg_catalog.pg_get_functiondef(p.oid) END
        FROM pg_catalog.pg_proc p JOIN ({_USER_NAMESPACES}) ns ON ns.oid = p.pronamespace
        WHERE p.oid NOT IN ({_EXTENSION_MEMBERS.format("'pg_catalog.pg_proc'")})""",
    "trigger": f"""
        SELECT 'trigger', quote_ident(ns.nspname) || '.' || quote_ident(c.relname) || '.' || quote_ident(g.tgname),
               pg_catalog.pg_get_triggerdef(g.oid)
        FROM pg_catalog.pg_trigger g
        JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
        JOIN ({_USER_NAMESPACES}) ns ON ns.oid = c.relnamespace
        WHERE NOT g.tgisinternal AND g.tgparentid = 0 AND c.oid NOT IN ({_EXTENSION_MEMBERS.format("'pg_catalog.pg_class'")})""",
    "row security": f"""
        SELECT 'row security', quote_ident(ns.nspname) || '.' || quote_ident(c.relname),
               concat_ws(', ', CASE WHEN c.relrowsecurity THEN 'enabled' ELSE 'disabled' END,
                         CASE WHEN c.relforcerowsecurity THEN 'forced' END)
        FROM pg_catalog.pg_class c JOIN ({_USER_NAMESPACES}) ns ON ns.oid = c.relnamespace
        WHERE (c.relrowsecurity OR c.relforcerowsecurity)
          AND c.oid NOT IN ({_EXTENSION_MEMBERS.format("'pg_catalog.pg_class'")})""",
    "policy": f"""
        SELECT 'policy', quote_ident(ns.nspname) || '.' || quote_ident(c.relname) || '.' || quote_ident(p.polname),
               concat_ws(' ', CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END,
                         'for ' || CASE p.polcmd WHEN 'r' THEN 'select' WHEN 'a' THEN 'insert' WHEN 'w' THEN 'update'
                                                 WHEN 'd' THEN 'delete' ELSE 'all' END,
                         'to ' || CASE WHEN p.polroles = '{{0}}' THEN 'public'
                                       ELSE (SELECT string_agg(quote_ident(r.rolname), ', ' ORDER BY r.rolname)
                                             FROM pg_catalog.pg_roles r WHERE r.oid = ANY (p.polroles)) END,
                         'using (' || pg_catalog.pg_get_expr(p.polqual, p.polrelid) || ')',
                         'with check (' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) || ')')
        FROM pg_catalog.pg_policy p
        JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
        JOIN ({_USER_NAMESPACES}) ns ON ns.oid = c.relnamespace
        WHERE c.oid NOT IN ({_EXTENSION_MEMBERS.format("'pg_catalog.pg_class'")})""",
    "large objects": """
        SELECT 'large objects', 'pg_largeobject', count(*)::text FROM pg_catalog.pg_largeobject_metadata""",
}

# The columns each sequence gives values to: those owning it (serial, identity), and those whose
# default is nextval() of it without owning it. Each must be ahead of its columns' data.
_SEQUENCE_COLUMNS = f"""
    SELECT quote_ident(sn.nspname) || '.' || quote_ident(s.relname),
           quote_ident(tn.nspname) || '.' || quote_ident(t.relname),
           quote_ident(a.attname), q.seqincrement
    FROM pg_catalog.pg_class s
    JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
    JOIN pg_catalog.pg_sequence q ON q.seqrelid = s.oid
    JOIN (SELECT d.objid AS seq, d.refobjid AS rel, d.refobjsubid AS attnum
          FROM pg_catalog.pg_depend d
          WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
            AND d.deptype IN ('a', 'i')
          UNION
          SELECT d.refobjid, ad.adrelid, ad.adnum
          FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_attrdef ad ON ad.oid = d.objid
          WHERE d.classid = 'pg_catalog.pg_attrdef'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
            AND pg_catalog.pg_get_expr(ad.adbin, ad.adrelid)
                = 'nextval(' || quote_literal(d.refobjid::regclass::text) || '::regclass)') u ON u.seq = s.oid
    JOIN pg_catalog.pg_class t ON t.oid = u.rel
    JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
    JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = u.attnum
    WHERE s.relkind = 'S' AND t.relkind IN ('r', 'p') AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
      AND s.oid NOT IN ({_EXTENSION_MEMBERS.format("'pg_catalog.pg_class'")})
    ORDER BY 1, 2, 3"""

# Every sequence's position, in one statement: pg_sequence_last_value() is NULL before the first
# nextval(). Cycling sequences may legitimately come round lower, so they are marked.
_SEQUENCE_VALUES = f"""
    SELECT quote_ident(ns.nspname) || '.' || quote_ident(c.relname), pg_catalog.pg_sequence_last_value(c.oid),
           q.seqstart, q.seqincrement, q.seqcycle
    FROM pg_catalog.pg_class c JOIN ({_USER_NAMESPACES}) ns ON ns.oid = c.relnamespace
    JOIN pg_catalog.pg_sequence q ON q.seqrelid = c.oid
    WHERE c.relkind = 'S' AND c.oid NOT IN ({_EXTENSION_MEMBERS.format("'pg_catalog.pg_class'")})
    ORDER BY 1"""

_ALL_SEQUENCES = f"""
    SELECT quote_ident(ns.nspname) || '.' || quote_ident(c.relname)
    FROM pg_catalog.pg_class c JOIN ({_USER_NAMESPACES}) ns ON ns.oid = c.relnamespace
    WHERE c.relkind = 'S' AND c.oid NOT IN ({_EXTENSION_MEMBERS.format("'pg_catalog.pg_class'")})
    ORDER BY 1"""


def _entry(kind: str, name: str, definition: str | None) -> dict:
    return {"kind": _RELATION_KINDS.get(kind, kind), "name": name, "definition": definition or ""}


def digest(objects: list[dict]) -> str:
    canonical = json.dumps(sorted((o["kind"], o["name"], o["definition"]) for o in objects),
                           separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def read(cursor) -> dict:
    """The catalogue of the database the cursor is connected to, read in the cursor's transaction.

    The caller owns the transaction: the backup program reads inside the REPEATABLE READ
    transaction whose snapshot pg_dump uses. The search_path is emptied for that transaction only.
    """
    catalogue = read_objects(cursor)
    catalogue["sequences"] = read_sequences(cursor)
    return catalogue


def read_objects(cursor) -> dict:
    """The catalogue without sequence values: what compare() compares."""
    cursor.execute("SELECT pg_catalog.set_config('search_path', '', true)")
    objects = []
    for query in _QUERIES.values():
        cursor.execute(query)
        objects.extend(_entry(*row) for row in cursor.fetchall())
    objects.sort(key=lambda o: (o["kind"], o["name"]))
    return {"version": CATALOGUE_VERSION, "digest": digest(objects), "objects": objects}


def read_sequences(cursor) -> list[dict]:
    """Every sequence's value and, for those giving values to columns, each column and its extreme."""
    cursor.execute("SELECT pg_catalog.set_config('search_path', '', true)")
    cursor.execute(_SEQUENCE_COLUMNS)
    columns: dict[str, list] = {}
    for name, table, column, increment in cursor.fetchall():
        columns.setdefault(name, []).append((table, column, increment))
    cursor.execute(_ALL_SEQUENCES)
    sequences = []
    for (name,) in cursor.fetchall():
        cursor.execute(f"SELECT last_value, is_called FROM {name}")
        last_value, is_called = cursor.fetchone()
        entry = {"name": name, "last_value": last_value, "is_called": is_called}
        if name in columns:
            entry["increment"] = columns[name][0][2]
            entry["columns"] = []
            for table, column, increment in columns[name]:
                cursor.execute(f"SELECT {'max' if increment > 0 else 'min'}({column}) FROM {table}")
                entry["columns"].append({"table": table, "column": column, "data_extreme": cursor.fetchone()[0]})
        sequences.append(entry)
    return sequences


def read_sequence_values(cursor) -> list[dict]:
    """Every sequence's next value (what nextval() would return), in one statement.

    The backup reads these before pg_dump starts: sequences only move forward (unless set back or
    cycling), so the values pg_dump then records, and a restore sets, are at least these.
    """
    cursor.execute("SELECT pg_catalog.set_config('search_path', '', true)")
    cursor.execute(_SEQUENCE_VALUES)
    return [{"name": name, "next_value": start if last is None else last + increment, "increment": increment,
             "cycle": cycle}
            for name, last, start, increment, cycle in cursor.fetchall()]


def sequence_value_problems(recorded: list[dict], restored: list[dict]) -> list[dict]:
    """Restored sequences behind the value the manifest recorded: they would hand out IDs again.

    Sequences missing from the restore are the schema check's to report; cycling ones are skipped.
    """
    now = {entry["name"]: entry["next_value"] for entry in restored}
    problems = []
    for entry in recorded:
        actual = now.get(entry["name"])
        if actual is None or entry["cycle"]:
            continue
        behind = actual < entry["next_value"] if entry["increment"] > 0 else actual > entry["next_value"]
        if behind:
            problems.append({"kind": "sequence", "name": entry["name"], "change": "behind manifest",
                             "expected": f"next value at least {entry['next_value']} as recorded before the dump",
                             "actual": f"next value {actual}"})
    return problems


def sequence_problems(sequences: list[dict]) -> list[dict]:
    """Sequences whose next value collides with data already in a column they give values to.

    A restored sequence behind its column makes the first insert after a restore fail with a
    duplicate key; nextval() returns last_value + increment once called, last_value before.
    """
    problems = []
    for entry in sequences:
        for column in entry.get("columns", []):
            extreme = column["data_extreme"]
            if extreme is None:
                continue
            increment = entry["increment"]
            next_value = entry["last_value"] + increment if entry["is_called"] else entry["last_value"]
            behind = next_value <= extreme if increment > 0 else next_value >= extreme
            if behind:
                problems.append({
                    "kind": "sequence", "name": entry["name"], "change": "behind data",
                    "expected": f"next value beyond {column['table']}.{column['column']} = {extreme}",
                    "actual": f"next value {next_value}",
                })
    return problems


def excluded(entry: dict, ignore_kinds, exclude) -> bool:
    """Whether options leave an object out: its kind is ignored or its name matches a pattern."""
    return entry["kind"] in ignore_kinds or any(fnmatch.fnmatchcase(entry["name"], pattern) for pattern in exclude)


def compare(expected: dict, actual: dict, ignore_kinds=(), exclude=()) -> list[dict]:
    """Differences between the source's catalogue and the restored one, by object.

    Each difference: kind, name, change (missing | extra | changed) and both definitions.
    ignore_kinds drops whole kinds; exclude holds shell-style patterns matched against names.
    """
    ignore_kinds, exclude = set(ignore_kinds), list(exclude)
    unknown = ignore_kinds - set(KINDS)
    if unknown:
        raise ValueError(f"unknown object kinds {sorted(unknown)}; known: {', '.join(KINDS)}")

    # A catalogue older than a kind does not list it: the restored side's entries of it are no extras.
    ignore_kinds |= {kind for kind, since in _KIND_SINCE.items() if expected.get("version", 1) < since}

    def index(catalogue):
        return {(o["kind"], o["name"]): o["definition"] for o in catalogue["objects"]
                if not excluded(o, ignore_kinds, exclude)}

    source, restored = index(expected), index(actual)
    differences = []
    for key in sorted(source.keys() | restored.keys()):
        kind, name = key
        if key not in restored:
            change = "missing"
        elif key not in source:
            change = "extra"
        elif source[key] != restored[key]:
            change = "changed"
        else:
            continue
        differences.append({"kind": kind, "name": name, "change": change,
                            "expected": source.get(key), "actual": restored.get(key)})
    return differences


def describe(difference: dict) -> str:
    """One line naming the object, for failure messages."""
    return f"{difference['kind']} {difference['name']} {difference['change']}"


# --- the catalogue against an archive's table of contents (deep verification) -----------------

# The entries pg_dump writes for each kind, by description; an object is found by its namespace and
# tag. Columns are written inside their table's entry and are thorough mode's to compare.
_TOC_DESCRIPTIONS = {
    "extension": ("EXTENSION",), "schema": ("SCHEMA",), "type": ("TYPE", "DOMAIN"),
    "table": ("TABLE", "FOREIGN TABLE"), "view": ("VIEW",), "materialized view": ("MATERIALIZED VIEW",),
    "sequence": ("SEQUENCE",), "index": ("INDEX",), "trigger": ("TRIGGER",), "policy": ("POLICY",),
    "row security": ("ROW SECURITY",), "constraint": ("CONSTRAINT", "FK CONSTRAINT", "CHECK CONSTRAINT"),
    "function": ("FUNCTION", "PROCEDURE", "AGGREGATE"),
}
_NAME_PART = re.compile(r'"((?:[^"]|"")*)"|([^."(]+)')
# initdb creates plpgsql in every database; pg_dump leaves out what initdb made (OIDs below 16384).
_BUILT_IN_EXTENSIONS = ("plpgsql",)


def _name_parts(name: str) -> tuple[list[tuple[str, str]], str]:
    """A catalogue name's parts as (unquoted, as written), and a function's argument list."""
    parts, position = [], 0
    while (match := _NAME_PART.match(name, position)) is not None:
        quoted = match.group(1)
        parts.append((quoted.replace('""', '"') if quoted is not None else match.group(2), match.group(0)))
        position = match.end()
        if not name.startswith(".", position):
            break
        position += 1
    return parts, name[position:]


def _arguments(listed: str) -> list[str]:
    """The arguments of "(a integer, b numeric)" at the top level of parentheses."""
    inner, depth, current, found = listed.strip()[1:-1], 0, "", []
    for character in inner:
        depth += character == "("
        depth -= character == ")"
        if character == "," and not depth:
            found.append(current.strip())
            current = ""
        else:
            current += character
    return found + ([current.strip()] if current.strip() else [])


def _function_in_toc(parts, listed: str, functions: dict) -> bool:
    """pg_dump tags a function with its argument types only ("fee(integer)"), the catalogue names
    it with pg_get_function_identity_arguments ("fee(minutes integer)"): the same name, as many
    arguments, each ending with the type the tag gives."""
    wanted = _arguments(listed)
    return any(len(types) == len(wanted) and all(arg.endswith(kind) for arg, kind in zip(wanted, types))
               for types in functions.get((parts[0][0], parts[1][0]), []))


def missing_from_toc(expected: dict, entries, ignore_kinds=(), exclude=()) -> list[dict]:
    """The catalogue's objects that an archive's table of contents lacks, as compare() reports a
    missing object. entries: pg_archive.Entry-like (desc, namespace, tag, defn).

    Only presence is judged: pg_dump writes definitions in its own SQL, so a changed definition or
    an object the catalogue lacks is thorough mode's to find. A constraint pg_dump writes inside
    its table's or domain's definition (CHECK), or inherits from a parent, is found there; an index
    that backs a constraint is written as that constraint.
    """
    ignore_kinds = set(ignore_kinds) | {kind for kind, since in _KIND_SINCE.items() if expected.get("version", 1) < since}
    present = {(entry.desc, entry.namespace, entry.tag) for entry in entries}
    definitions = "\n".join(entry.defn for entry in entries if entry.desc in ("TABLE", "DOMAIN", "FOREIGN TABLE"))
    constraints = "\n".join(entry.defn for entry in entries if entry.desc in _TOC_DESCRIPTIONS["constraint"])
    functions: dict[tuple[str, str], list[list[str]]] = {}
    for entry in entries:
        if entry.desc in _TOC_DESCRIPTIONS["function"]:
            name, _paren, types = entry.tag.partition("(")
            functions.setdefault((entry.namespace, name), []).append(_arguments("(" + types))
    large_objects = sum(entry.desc == "BLOB" for entry in entries)

    def found(obj: dict) -> bool:
        kind = obj["kind"]
        parts, listed = _name_parts(obj["name"])
        names = [unquoted for unquoted, _written in parts]
        if kind == "extension" and obj["name"] in _BUILT_IN_EXTENSIONS:
            return True
        if kind == "large objects":
            return large_objects >= int(obj["definition"] or 0)
        if kind == "function":
            return _function_in_toc(parts, listed, functions)
        if kind == "row security" and not obj["definition"].startswith("enabled"):
            return True  # FORCE alone is part of the table's definition
        namespace, tag = ("", names[0]) if len(names) == 1 else (names[0], " ".join(names[1:]))
        if any((desc, namespace, tag) in present for desc in _TOC_DESCRIPTIONS[kind]):
            return True
        if kind == "constraint":
            return f"CONSTRAINT {parts[-1][1]} " in definitions
        if kind == "index":
            return f"ADD CONSTRAINT {parts[-1][1]} " in constraints
        return False

    return [{"kind": obj["kind"], "name": obj["name"], "change": "missing", "expected": obj["definition"], "actual": None}
            for obj in expected["objects"]
            if obj["kind"] in _TOC_DESCRIPTIONS.keys() | {"large objects"} and not excluded(obj, ignore_kinds, exclude)
            and not found(obj)]
