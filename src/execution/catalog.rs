//! Reading a served database's own catalog ([`Snapshot`]) over the guarded connection, and
//! keeping it fresh while serving.
//!
//! One query per catalog (server, extensions, functions, operators, relations), each a
//! guarded read like any other: READ ONLY, time-limited, size-capped. A snapshot that does
//! not come back whole is not used: the analysis then falls back to the static catalog of
//! PostgreSQL 15's built-ins, which denies every other function (fail closed).

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Database, ExecError, RunLimits};
use crate::analysis::snapshot::{
    CastDef, Extension, Function, OperatorDef, RelationDef, Server, Snapshot,
};
use crate::analysis::{AnalysisOptions, Facts};

const SERVER: &str = "SELECT current_setting('server_version_num')::int4 AS version_num, \
     current_setting('server_version') AS version, current_database() AS database, \
     to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS taken_at";

const EXTENSIONS: &str = "SELECT e.extname AS name, e.extversion AS version, n.nspname AS schema \
     FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
     ORDER BY 1";

/// What an argument whose type is the `pg_type` row `$t` accepts (see
/// `OperatorDef::left_accepts`), as a JSON array: for an extension's or a user's own type, the
/// types with an implicit cast to it; for a built-in type (only where `$own` holds: the function
/// or operator is not PostgreSQL's own), itself, those with an implicit cast to it and, for an
/// array, arrays of those of its element. NULL: any operand (a domain, a pseudo-type).
macro_rules! accepts {
    ($t:literal, $own:literal) => {
        concat!(
            "CASE WHEN ", $t, ".oid >= 16384 AND ", $t, ".typtype IN ('b', 'e', 'r', 'm') THEN COALESCE((SELECT \
             pg_catalog.json_agg(pg_catalog.format_type(c.castsource, NULL) ORDER BY c.castsource) \
             FROM pg_catalog.pg_cast c WHERE c.casttarget = ", $t, ".oid AND c.castcontext = 'i'), '[]') \
             WHEN ", $t, ".oid < 16384 AND ", $t, ".typtype IN ('b', 'r', 'm') AND ", $own, " THEN (SELECT \
             pg_catalog.json_agg(DISTINCT w.name) FROM (SELECT pg_catalog.format_type(", $t, ".oid, NULL) \
             UNION ALL SELECT pg_catalog.format_type(c.castsource, NULL) FROM pg_catalog.pg_cast c \
             WHERE c.casttarget = ", $t, ".oid AND c.castcontext = 'i' \
             UNION ALL SELECT pg_catalog.format_type(st.typarray, NULL) FROM pg_catalog.pg_cast c \
             JOIN pg_catalog.pg_type st ON st.oid = c.castsource \
             WHERE ", $t, ".typelem <> 0 AND ", $t, ".typsubscript <> 0 AND c.casttarget = ", $t, ".typelem \
             AND c.castcontext = 'i' AND st.typarray <> 0) w(name)) \
             END"
        )
    };
}

/// Objects below this OID were created by `initdb`: PostgreSQL's own.
const FUNCTIONS: &str = concat!(
    "SELECT n.nspname AS schema, p.proname AS name, \
     pg_catalog.pg_get_function_identity_arguments(p.oid) AS arguments, \
     CASE p.prokind WHEN 'a' THEN 'aggregate' WHEN 'w' THEN 'window' WHEN 'p' THEN 'procedure' ELSE 'function' END AS kind, \
     CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' THEN 'stable' ELSE 'volatile' END AS volatility, \
     p.prosecdef AS security_definer, l.lanname AS language, e.extname AS extension, \
     CASE WHEN e.extname IS NOT NULL THEN 'extension' WHEN p.oid < 16384 THEN 'builtin' ELSE 'user' END AS source, \
     p.pronargs AS nargs, p.pronargdefaults AS defaults, p.provariadic <> 0 AS variadic, \
     CASE WHEN p.oid >= 16384 THEN (SELECT pg_catalog.json_agg(",
    accepts!("t", "true"),
    " ORDER BY a.n) \
          FROM unnest(p.proargtypes::pg_catalog.oid[]) WITH ORDINALITY AS a(oid, n) \
          LEFT JOIN pg_catalog.pg_type t ON t.oid = a.oid) END AS accepts \
     FROM pg_catalog.pg_proc p \
     JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
     LEFT JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass \
          AND d.objid = p.oid AND d.deptype = 'e' \
     LEFT JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid \
     ORDER BY 1, 2, 3"
);

const OPERATORS: &str = concat!(
    "SELECT n.nspname AS schema, o.oprname AS name, \
     pg_catalog.format_type(NULLIF(o.oprleft, 0), NULL) AS \"left\", \
     pg_catalog.format_type(NULLIF(o.oprright, 0), NULL) AS \"right\", \
     fn.nspname AS function_schema, p.proname AS function_name, e.extname AS extension, \
     CASE WHEN e.extname IS NOT NULL THEN 'extension' WHEN o.oid < 16384 THEN 'builtin' ELSE 'user' END AS source, ",
    accepts!("lt", "o.oid >= 16384"),
    " AS left_accepts, ",
    accepts!("rt", "o.oid >= 16384"),
    " AS right_accepts \
     FROM pg_catalog.pg_operator o \
     JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace \
     LEFT JOIN pg_catalog.pg_type lt ON lt.oid = o.oprleft \
     LEFT JOIN pg_catalog.pg_type rt ON rt.oid = o.oprright \
     JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode \
     JOIN pg_catalog.pg_namespace fn ON fn.oid = p.pronamespace \
     LEFT JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_operator'::pg_catalog.regclass \
          AND d.objid = o.oid AND d.deptype = 'e' \
     LEFT JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid \
     ORDER BY 1, 2, 3, 4"
);

const RELATIONS: &str = "SELECT n.nspname AS schema, c.relname AS name, \
     CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized_view' \
          WHEN 'f' THEN 'foreign_table' WHEN 'p' THEN 'partitioned_table' WHEN 'S' THEN 'sequence' \
          WHEN 'i' THEN 'index' WHEN 'I' THEN 'index' ELSE 'composite_type' END AS kind, \
     c.reltuples::int8 AS rows_estimate, \
     c.relpages::int8 * pg_catalog.current_setting('block_size')::int8 AS bytes, \
     s.srvname AS server, e.extname AS extension, \
     COALESCE((SELECT pg_catalog.json_agg(pn.nspname || '.' || p.relname ORDER BY i.inhseqno) \
          FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class p ON p.oid = i.inhparent \
          JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid), '[]') AS parents, \
     CASE WHEN c.relkind IN ('i', 'I') THEN COALESCE((SELECT pg_catalog.json_agg(DISTINCT \
                 rn.nspname || '.' || rc.relname || CASE WHEN d.refobjsubid > 0 THEN '.' || a.attname ELSE '' END) \
          FROM pg_catalog.pg_depend d \
          JOIN pg_catalog.pg_class rc ON rc.oid = d.refobjid \
          JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace \
          LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
          WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid \
            AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid <> c.oid), \
          (SELECT pg_catalog.json_agg(tn.nspname || '.' || t.relname) FROM pg_catalog.pg_index x \
           JOIN pg_catalog.pg_class t ON t.oid = x.indrelid JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace \
           WHERE x.indexrelid = c.oid)) \
     ELSE COALESCE((SELECT pg_catalog.json_agg(DISTINCT rn.nspname || '.' || rc.relname \
                 || CASE WHEN d.refobjsubid > 0 THEN '.' || a.attname ELSE '' END) \
          FROM pg_catalog.pg_rewrite rw \
          JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
               AND d.objid = rw.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
               AND d.refobjid <> c.oid \
          JOIN pg_catalog.pg_class rc ON rc.oid = d.refobjid \
          JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace \
          LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
          WHERE rw.ev_class = c.oid AND c.relkind IN ('v', 'm')), '[]') END AS reads, \
     COALESCE((SELECT pg_catalog.json_agg(pg_catalog.json_build_array(a.attname, \
                 pg_catalog.format_type(a.atttypid, NULL)) ORDER BY a.attnum) \
          FROM pg_catalog.pg_attribute a \
          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]') AS columns, \
     c.oid::int8 AS oid, \
     COALESCE((SELECT pg_catalog.json_agg(a.attnum ORDER BY a.attnum) FROM pg_catalog.pg_attribute a \
          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]') AS attnums \
     FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     LEFT JOIN pg_catalog.pg_foreign_table ft ON ft.ftrelid = c.oid \
     LEFT JOIN pg_catalog.pg_foreign_server s ON s.oid = ft.ftserver \
     LEFT JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
          AND d.objid = c.oid AND d.deptype = 'e' \
     LEFT JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid \
     WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p', 'S', 'c', 'i', 'I') \
       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
     ORDER BY 1, 2";

/// Each view's and materialized view's definition, with every name outside `pg_catalog`
/// schema-qualified: the transaction's `search_path` is emptied (by `CASE`, before the first
/// definition is written; the ROLLBACK restores it), so the text means the same whatever
/// path it is analyzed under. A query of its own: `format_type` in the others would qualify
/// types too.
const VIEWS: &str = "SELECT n.nspname AS schema, c.relname AS name, \
     CASE WHEN pg_catalog.set_config('search_path', '', true) = '' \
          THEN pg_catalog.pg_get_viewdef(c.oid) END AS definition \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('v', 'm') \
       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
     ORDER BY 1, 2";

/// Casts whose function is not PostgreSQL's own (`CREATE CAST … WITH FUNCTION`, by users and
/// extensions) with the context PostgreSQL applies them in by itself (`implicit`: wherever
/// the types meet; `assignment`: storing into a column; `explicit`: only when written), and
/// the non-built-in functions a domain's `CHECK` constraints call: what a conversion to a
/// type runs. A conversion checks every domain inside the value too, so each type not
/// PostgreSQL's own is listed with the checks of every domain it is made of: up a chain of
/// domains, in a composite type's fields (a table's row type included), a range's subtype, a
/// multirange's range and an array's elements, at any depth.
const CASTS: &str = "SELECT tn.nspname AS type_schema, t.typname AS type_name, \
     pg_catalog.format_type(c.castsource, NULL) AS source, \
     pn.nspname AS function_schema, p.proname AS function_name, 'cast' AS via, \
     CASE c.castcontext WHEN 'i' THEN 'implicit' WHEN 'a' THEN 'assignment' ELSE 'explicit' END AS context, \
     pg_catalog.format_type(c.casttarget, NULL) AS target, \
     c.castsource < 16384 AS source_builtin, c.casttarget < 16384 AS target_builtin \
     FROM pg_catalog.pg_cast c \
     JOIN pg_catalog.pg_type t ON t.oid = c.casttarget \
     JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace \
     JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc \
     JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
     WHERE c.castmethod = 'f' AND p.oid >= 16384 \
     UNION ALL \
     SELECT DISTINCT tn.nspname, t.typname, NULL, pn.nspname, p.proname, 'domain_check', NULL::text, NULL::text, NULL::bool, NULL::bool \
     FROM pg_catalog.pg_type t \
     JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace \
     JOIN LATERAL (WITH RECURSIVE part(oid, depth) AS ( \
            SELECT t.oid, 0 \
            UNION \
            SELECT x.oid, part.depth + 1 FROM part \
            JOIN pg_catalog.pg_type b ON b.oid = part.oid \
            CROSS JOIN LATERAL ( \
                 SELECT b.typbasetype WHERE b.typtype = 'd' \
                 UNION ALL SELECT b.typelem WHERE b.typelem <> 0 AND b.typsubscript <> 0 \
                 UNION ALL SELECT r.rngsubtype FROM pg_catalog.pg_range r WHERE r.rngtypid = b.oid \
                 UNION ALL SELECT r.rngtypid FROM pg_catalog.pg_range r WHERE r.rngmultitypid = b.oid \
                 UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a \
                      WHERE b.typtype = 'c' AND a.attrelid = b.typrelid AND a.attnum > 0 AND NOT a.attisdropped \
            ) x(oid) \
            WHERE part.depth < 32 AND x.oid >= 16384) \
          SELECT oid FROM part) up ON true \
     JOIN pg_catalog.pg_type dt ON dt.oid = up.oid AND dt.typtype = 'd' \
     JOIN pg_catalog.pg_constraint k ON k.contypid = dt.oid \
     JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass \
          AND d.objid = k.oid AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass \
     JOIN pg_catalog.pg_proc p ON p.oid = d.refobjid \
     JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
     WHERE t.oid >= 16384 AND p.oid >= 16384 \
     ORDER BY 1, 2, 3, 4, 5";

/// A catalog read's caps: large catalogs (tens of thousands of relations) still fit.
const LIMITS: RunLimits = RunLimits {
    max_rows: 1_000_000,
    max_result_bytes: 256 << 20,
    statement_timeout_ms: 30_000,
    work_mem_kb: None,
    temp_file_limit_kb: None,
};

impl Database {
    /// Reads the database's catalog: one guarded query per catalog.
    pub async fn read_catalog(&self) -> Result<Snapshot, ExecError> {
        let server: Vec<Server> = self.catalog_rows("server", SERVER).await?;
        let server = server
            .into_iter()
            .next()
            .ok_or_else(|| ExecError::Protocol("the server's version came back empty".into()))?;
        Ok(Snapshot::new(
            server,
            self.catalog_rows::<Extension>("pg_extension", EXTENSIONS)
                .await?,
            self.catalog_rows::<Function>("pg_proc", FUNCTIONS).await?,
            self.catalog_rows::<OperatorDef>("pg_operator", OPERATORS)
                .await?,
            self.relations().await?,
            self.catalog_rows::<CastDef>("pg_cast", CASTS).await?,
        ))
    }

    /// `pg_class`, with each view's definition.
    async fn relations(&self) -> Result<Vec<RelationDef>, ExecError> {
        #[derive(serde::Deserialize)]
        struct View {
            schema: String,
            name: String,
            definition: Option<String>,
        }
        let mut relations: Vec<RelationDef> = self.catalog_rows("pg_class", RELATIONS).await?;
        let views: Vec<View> = self.catalog_rows("pg_get_viewdef", VIEWS).await?;
        let mut views: std::collections::HashMap<(String, String), Option<String>> = views
            .into_iter()
            .map(|v| ((v.schema, v.name), v.definition))
            .collect();
        for r in &mut relations {
            if let Some(d) = views.remove(&(r.schema.clone(), r.name.clone())) {
                r.definition = d;
            }
        }
        Ok(relations)
    }

    async fn catalog_rows<T: DeserializeOwned>(
        &self,
        catalog: &str,
        sql: &str,
    ) -> Result<Vec<T>, ExecError> {
        let r = self.execute(sql, LIMITS).await?;
        if r.truncated {
            return Err(ExecError::Protocol(format!(
                "{catalog} is larger than a catalog snapshot may be ({} rows, {} MB)",
                LIMITS.max_rows,
                LIMITS.max_result_bytes >> 20
            )));
        }
        r.rows
            .unwrap_or_default()
            .into_iter()
            .map(|row| {
                serde_json::from_value(Value::Object(row)).map_err(|e| {
                    ExecError::Protocol(format!("an unexpected row from {catalog}: {e}"))
                })
            })
            .collect()
    }
}

/// When a served database's catalog is read again.
#[derive(Debug, Clone, Copy)]
pub struct CatalogRefresh {
    /// A snapshot older than this is read again at the next call.
    pub max_age: Duration,
    /// A query naming something the snapshot does not hold reads it again, at most this often
    /// (an extension created while serving is then known at once).
    pub min_interval: Duration,
    /// A call waits at most this long for a read (then the static catalog is used).
    pub timeout: Duration,
}

impl Default for CatalogRefresh {
    fn default() -> Self {
        CatalogRefresh {
            max_age: Duration::from_secs(300),
            min_interval: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
        }
    }
}

/// A served database's catalog while serving: the analysis options to use for its calls.
pub struct LiveCatalog {
    /// The options without a snapshot (the static catalog).
    base: Arc<AnalysisOptions>,
    refresh: CatalogRefresh,
    /// The options with the latest snapshot, and when it was read.
    current: RwLock<Option<(Instant, Arc<AnalysisOptions>)>>,
    /// The last attempt (successful or not), so a failing database is not asked on every call.
    attempted: Mutex<Option<Instant>>,
    /// One read at a time.
    reading: tokio::sync::Mutex<()>,
}

impl LiveCatalog {
    pub fn new(base: Arc<AnalysisOptions>, refresh: CatalogRefresh) -> LiveCatalog {
        LiveCatalog {
            base,
            refresh,
            current: RwLock::new(None),
            attempted: Mutex::new(None),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> Option<(Instant, Arc<AnalysisOptions>)> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The options for a call now: the snapshot's, read (again) first when there is none or
    /// it is older than `max_age`. Without a route to the database (`db` is `None`) or when
    /// the read fails, the static catalog's.
    pub async fn options(&self, db: Option<&Database>) -> Arc<AnalysisOptions> {
        match self.current() {
            Some((at, opts)) if at.elapsed() < self.refresh.max_age => opts,
            current => match db {
                Some(db) if self.may_attempt(self.refresh.min_interval) => self
                    .read(db)
                    .await
                    .or(current.map(|c| c.1))
                    .unwrap_or_else(|| self.base.clone()),
                _ => current.map_or_else(|| self.base.clone(), |c| c.1),
            },
        }
    }

    /// Reads the catalog again when `facts` (analyzed with a snapshot) name a function,
    /// operator or relation the snapshot does not hold and the last read is at least
    /// `min_interval` old. Returns the new options, if read.
    pub async fn refresh_for(
        &self,
        facts: &Facts,
        db: Option<&Database>,
    ) -> Option<Arc<AnalysisOptions>> {
        let db = db?;
        if self.current().is_none() || !facts.names_missing_from_catalog() {
            return None;
        }
        if !self.may_attempt(self.refresh.min_interval) {
            return None;
        }
        self.read(db).await
    }

    /// Forgets the snapshot: the next call reads the catalog again.
    pub fn invalidate(&self) {
        match self.current.write() {
            Ok(mut c) => *c = None,
            Err(p) => *p.into_inner() = None,
        }
        if let Ok(mut a) = self.attempted.lock() {
            *a = None;
        }
    }

    fn may_attempt(&self, interval: Duration) -> bool {
        match self.attempted.lock() {
            Ok(a) => a.is_none_or(|at| at.elapsed() >= interval),
            Err(_) => true,
        }
    }

    async fn read(&self, db: &Database) -> Option<Arc<AnalysisOptions>> {
        let _one = self.reading.lock().await;
        // Another call may have read it while this one waited.
        if let Some((at, opts)) = self.current() {
            if at.elapsed() < self.refresh.min_interval {
                return Some(opts);
            }
        }
        if let Ok(mut a) = self.attempted.lock() {
            *a = Some(Instant::now());
        }
        let started = Instant::now();
        match tokio::time::timeout(self.refresh.timeout, db.read_catalog()).await {
            Ok(Ok(snapshot)) => {
                tracing::info!(
                    target = %db.target(),
                    "catalog snapshot read in {} ms: {}",
                    started.elapsed().as_millis(),
                    snapshot.summary()
                );
                let opts = Arc::new((*self.base).clone().with_snapshot(Some(Arc::new(snapshot))));
                match self.current.write() {
                    Ok(mut c) => *c = Some((Instant::now(), opts.clone())),
                    Err(p) => *p.into_inner() = Some((Instant::now(), opts.clone())),
                }
                Some(opts)
            }
            Ok(Err(e)) => {
                tracing::warn!(target = %db.target(), "cannot read the database's catalog ({e}): names resolve against PostgreSQL 15's built-ins only");
                None
            }
            Err(_) => {
                tracing::warn!(target = %db.target(), "reading the database's catalog took over {} s: names resolve against PostgreSQL 15's built-ins only", self.refresh.timeout.as_secs());
                None
            }
        }
    }
}
