//! What each diagnostic code checks, in one sentence: the rules of the SARIF log.

/// Every code `replay validate` reports, with a short description.
pub const RULES: &[(&str, &str)] = &[
    // loading
    ("yaml", "The file is well-formed YAML with one document"),
    ("encoding", "The file is UTF-8"),
    ("too-large", "The file is within the size limit of plans"),
    ("unreadable", "The file can be read"),
    // schema
    ("unknown-key", "Every key is one the plan format knows"),
    ("missing-key", "Every required key is present"),
    ("wrong-type", "Every value has the type its key takes"),
    ("not-allowed", "Every value is one its key allows"),
    ("bad-format", "Every value has the format its key takes"),
    (
        "out-of-range",
        "Every number, length and list is within its range",
    ),
    (
        "unknown-kind",
        "Every step and rollback action has a known `kind`",
    ),
    ("internal", "The built-in plan schema compiles"),
    ("schema", "The schema and the plan types agree"),
    // semantic
    ("duplicate-step-id", "Step ids are unique"),
    ("undeclared-param", "Every parameter used is declared"),
    ("unused-param", "Every declared parameter is used"),
    ("param-default-type", "Parameter defaults fit their types"),
    ("param-type", "Parameters are used where their type fits"),
    (
        "unknown-bind",
        "Every SQL `:bind` is a parameter or a built-in bind",
    ),
    ("template-syntax", "Templates compile"),
    ("unknown-variable", "Templates read only known variables"),
    ("unknown-helper", "Templates use only known helpers"),
    ("sql-syntax", "SQL texts parse (PostgreSQL dialect)"),
    (
        "template-in-sql",
        "SQL texts take values as `:binds`, never templates",
    ),
    ("multiple-statements", "Each SQL text is one statement"),
    (
        "unbounded-write",
        "`UPDATE` and `DELETE` have a `WHERE` unless allowed",
    ),
    (
        "ddl-required",
        "Statements that change the schema or privileges need `allow_ddl`",
    ),
    (
        "query-writes",
        "Verifications, wait conditions and backup filters are read-only",
    ),
    (
        "force-required",
        "Deleting from the events table needs `safety.force`",
    ),
    (
        "force-unacknowledged",
        "`safety.force` needs its acknowledgement",
    ),
    (
        "unfiltered-selection",
        "A selection has a filter or `all: true`",
    ),
    (
        "template-in-selection",
        "Selection values are literals or exactly one parameter",
    ),
    (
        "template-not-allowed",
        "Templates stand only in template fields",
    ),
    (
        "bad-value",
        "Durations, time zones and windows are well-formed",
    ),
    (
        "wait-condition",
        "A wait step waits for exactly one thing, within its timeout",
    ),
    ("expectation", "A verification expects exactly one thing"),
    (
        "restore-without-backup",
        "`restore_backup` names backed-up tables",
    ),
    ("unbounded-backup", "A backup of a whole table says so"),
    ("unused-setting", "Every setting given has an effect"),
    ("canary-unjudged", "A canary has verifications to judge it"),
    ("duplicate-guard", "Guard names are unique"),
    (
        "unknown-status",
        "Selected statuses are ones the target has",
    ),
    ("inverted-range", "A time range starts before it ends"),
    (
        "placeholder-reason",
        "A plan's reason is written, not a TODO skeleton",
    ),
    (
        "guard-value",
        "A guard reads exactly one value: SQL or a queue's depth",
    ),
    ("guard-bound", "A guard has a consistent `max` or `min`"),
    ("http-url", "An http step calls an http:// or https:// URL"),
    (
        "strict-sql",
        "With `--strict-sql`: only allowed functions and statements a rollback undoes",
    ),
];

/// The description of a code.
pub fn describe(code: &str) -> Option<&'static str> {
    RULES.iter().find(|(c, _)| *c == code).map(|(_, d)| *d)
}
