"""The contract's merge rules as case tables: one data module per rule.

Modelled on sqlfluff's rule case tables (``test/fixtures/rules/std_rule_cases/*.yml``):
each ``ruleN_*.py`` module here holds ``CASES``, a dict from a case name to plain data
(PyYAML is not a dependency of this project, so the tables are Python literals; a
module holds data and constants only, no logic). The runner is
``tests/integration/merge/test_rule_cases.py``: it builds every input as a PostgreSQL
database, runs the merge through the CLI (``run --json --yes``) with each transport,
and compares; it also compiles each case's Oracle plan (not executed: no Oracle server).

A case::

    "name": {
        "doc": "what the case shows (one line)",
        # the inputs in contract order: the target's existing rows, then each source
        "inputs": [
            {"tc_rooms": [...], "tc_msgarchive": [...]},   # input 0: the target
            {"tc_rooms": [...]},                             # input 1: the first source
            {"sql": ["ALTER TABLE ..."], "tc_users": [...]}, # SQL run before its rows
        ],
        # optional: the --source arguments, by input number; "target" names the target
        # itself as a source (default: inputs 1..n in order)
        "sources": [1, "target", 2],
        "options": {"tables": "tc,ma,mft", "strict": True},   # optional
        "expect": {
            "exit": 0,            # or 1: refused; then the target must be unchanged
            # the target's rows after the merge: exactly these (order-independent)
            "rows": {"tc_msgarchive": [...]},
            # per table, the named counts of the run's JSON ``tables`` object
            "counts": {"tc_msgarchive": {"inserted": 2, "renumbered": 1}},
            # "severity CODE" of every finding of the rules (RULE_CODES in the runner)
            # and of any other code named here; exactly this set
            "findings": {"info MSG_ID_COLLISION"},
            # optional: the same merge run again (copy transport): its counts/findings;
            # every successful case is run twice and must insert nothing the second time
            "again": {"counts": {...}, "findings": {...}},
        },
    }

Rows are dicts of column values; omitted columns take the defaults in
``DEFAULTS`` of the runner (``tests/integration/merge/test_rule_cases.py``), the same
for inputs and for expected rows, so a row names only what the case is about. Dates
are minutes after 2024-01-01 12:00 (an int) or ``datetime`` values; ``None`` is NULL.
"""
