//! The MCP tools and resources, named and shaped as Teleport's `tsh mcp db start` does.

use std::sync::Arc;
use std::time::Instant;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, Resource, ResourceContents, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{json, Value};

use super::approval::{Approver, Asked};
use super::state::{ServedDatabase, State};
use crate::audit::{
    now_rfc3339, verdict, ApprovalRecord, CallRecord, Caller, ClientRecord, OutcomeRecord,
    PlanRecord, QueryText, SessionRecord, Timings,
};
use crate::config::AuditQuery;
use crate::execution::{result_json, ExecError, PgError, Planned, RunLimits};
use crate::policy::Reason;
use crate::teleport::uri::{DatabaseUri, EXPECTED_FORMAT};

pub const TOOL_LIST: &str = "teleport_list_databases";
pub const TOOL_QUERY: &str = "teleport_postgres_query";
/// The `tool` of a resource read's audit record.
pub const TOOL_READ: &str = "resources/read";

/// The MCP client's name and version, from its `initialize` request.
fn client_of(context: &RequestContext<RoleServer>) -> Option<ClientRecord> {
    context.peer.peer_info().map(|info| ClientRecord {
        name: info.client_info.name.clone(),
        version: info.client_info.version.clone(),
    })
}

const INSTRUCTIONS: &str = "This server gives read-only access to PostgreSQL databases through Teleport, \
guarded by sqlguard. Call teleport_list_databases to see the databases and their URIs, then \
teleport_postgres_query with one of those URIs and ONE SQL statement. Rules: only SELECT (also VALUES, \
TABLE), SHOW and EXPLAIN of those may run; no INSERT/UPDATE/DELETE/DDL, no SET, no transaction \
control, no FOR UPDATE/SHARE, no SELECT INTO, no data-modifying WITH; volatile or side-effect \
functions (pg_sleep, nextval, dblink, file access, …) are refused; write values into the query (no \
$1 parameters). Results are capped (rows, bytes and time, usually 1000 rows / 1 MiB / 30 s): \
'truncated': true means more rows exist, so add WHERE, LIMIT or aggregates. A refused query comes \
back as an error that says what to change. Some queries need a person's approval: the server asks \
the user in the client and runs the query only if they approve. To learn the schema, read the resource \
sqlguard://clusters/<cluster>/databases/<name>/schema";

/// Added to [`INSTRUCTIONS`] only when the policy lets the caller read them on every database.
const INSTRUCTIONS_INFORMATION_SCHEMA: &str =
    " or query information_schema.tables and information_schema.columns";

/// The queries [`INSTRUCTIONS_INFORMATION_SCHEMA`] suggests.
const INFORMATION_SCHEMA_QUERIES: [&str; 2] = [
    "SELECT table_schema, table_name FROM information_schema.tables",
    "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns",
];

/// The MCP server.
#[derive(Clone)]
pub struct Sqlguard {
    state: Arc<State>,
    /// Over HTTP: the user whose token opened this MCP session; another user's token on it
    /// is refused.
    session_user: Arc<std::sync::Mutex<Option<String>>>,
}

fn object_schema(properties: Value, required: &[&str]) -> Arc<serde_json::Map<String, Value>> {
    let v = json!({"type": "object", "properties": properties, "required": required});
    Arc::new(v.as_object().cloned().unwrap_or_default())
}

fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            TOOL_LIST,
            "List the PostgreSQL databases this server can query, with their resource URIs (pass one as `database` to teleport_postgres_query).",
            object_schema(json!({}), &[]),
        ),
        Tool::new(
            TOOL_QUERY,
            "Run ONE read-only SQL statement (SELECT, VALUES, TABLE, SHOW, EXPLAIN) on a database. \
             Writes, DDL, SET, transaction control, locking clauses and side-effect functions are refused \
             with an explanation. Results are capped in rows, bytes and time; the JSON result is \
             {\"data\": [rows], \"rowsCount\": N, \"truncated\": bool}.",
            object_schema(
                json!({
                    "database": {"type": "string", "description": "Resource URI of the database, from teleport_list_databases (teleport://clusters/<cluster>/databases/<name>)."},
                    "query": {"type": "string", "description": "One PostgreSQL statement."}
                }),
                &["database", "query"],
            ),
        ),
    ]
}

/// Teleport's error shape: `{"data": null, "rowsCount": 0, "error": "…"}`, as a tool error.
fn tool_error(message: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(
        json!({"data": null, "rowsCount": 0, "error": message}).to_string(),
    )])
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The database's YAML, with the keys Teleport writes.
fn database_yaml(d: &ServedDatabase) -> String {
    let mut out = String::new();
    out.push_str(&format!("name: {}\n", yaml_str(&d.spec.uri.name)));
    out.push_str(&format!("description: {}\n", yaml_str(&d.spec.description)));
    if d.spec.labels.is_empty() {
        out.push_str("labels: {}\n");
    } else {
        out.push_str("labels:\n");
        for (k, v) in &d.spec.labels {
            out.push_str(&format!("  {}: {}\n", yaml_str(k), yaml_str(v)));
        }
    }
    out.push_str(&format!("uri: {}\n", yaml_str(&d.context.uri)));
    out.push_str("protocol: postgres\n");
    out.push_str(&format!(
        "cluster_name: {}\n",
        yaml_str(&d.spec.uri.cluster)
    ));
    out
}

/// `s` as a quoted SQL identifier.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The catalog's relations and the columns the connection's role may read, in order.
const SCHEMA_SQL: &str = "SELECT n.nspname AS table_schema, c.relname AS table_name, \
                   CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized_view' \
                        WHEN 'f' THEN 'foreign_table' ELSE 'partitioned_table' END AS table_type, \
                   a.attname AS column_name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS data_type \
                   FROM pg_catalog.pg_class c \
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                   WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p') \
                     AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' \
                     AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
                     AND pg_catalog.has_column_privilege(c.oid, a.attnum, 'SELECT') \
                   ORDER BY 1, 2, a.attnum";

/// The relations and columns of the catalog rows (ordered by relation) that `can_run` lets
/// the caller read: a relation when `SELECT 1 FROM it` is allowed, a column when selecting it
/// is.
fn readable_relations(
    rows: impl IntoIterator<Item = serde_json::Map<String, Value>>,
    can_run: &dyn Fn(&str) -> bool,
    mask_of: &dyn Fn(&str, &str, &str) -> Option<Value>,
) -> Vec<Value> {
    let mut relations: Vec<Value> = Vec::new();
    let mut current: Option<(String, String, bool)> = None;
    for row in rows {
        let s = row
            .get("table_schema")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let t = row
            .get("table_name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let col = row.get("column_name").and_then(Value::as_str).unwrap_or("");
        if current
            .as_ref()
            .is_none_or(|(cs, ct, _)| *cs != s || *ct != t)
        {
            let readable = can_run(&format!("SELECT 1 FROM {}.{}", quoted(&s), quoted(&t)));
            if readable {
                relations.push(json!({
                    "schema": s, "name": t,
                    "kind": row.get("table_type").cloned().unwrap_or(Value::Null),
                    "columns": [],
                }));
            }
            current = Some((s.clone(), t.clone(), readable));
        }
        if current.as_ref().is_some_and(|c| c.2)
            && can_run(&format!(
                "SELECT {} FROM {}.{}",
                quoted(col),
                quoted(&s),
                quoted(&t)
            ))
        {
            if let Some(Value::Array(cols)) =
                relations.last_mut().and_then(|r| r.get_mut("columns"))
            {
                let mut c = json!({"name": col, "type": row.get("data_type").cloned().unwrap_or(Value::Null)});
                if let Some(mask) = mask_of(&s, &t, col) {
                    c["mask"] = mask;
                }
                cols.push(c);
            }
        }
    }
    relations
}

/// The audit's account of one ask and its answer.
fn approval_record(step: &'static str, asks: &[Reason], asked: &Asked) -> ApprovalRecord {
    ApprovalRecord {
        step,
        answer: asked.answer.as_str(),
        rules: asks.iter().map(|r| r.rule.clone()).collect(),
        wait_ms: asked.waited.as_millis() as u64,
        detail: asked.detail.clone(),
    }
}

fn schema_uri(d: &ServedDatabase) -> String {
    d.context.uri.replacen("teleport://", "sqlguard://", 1) + "/schema"
}

/// The `outcome` record of an allowed call: its final verdict (and the plan rules that
/// refused), timings; rows and errors are filled in by the caller.
fn outcome_of(
    record: &CallRecord,
    ran: Ran,
    run_started: Instant,
    started: Instant,
) -> (OutcomeRecord, Result<crate::execution::QueryResult, String>) {
    let Ran {
        result: r,
        plan: plan_record,
        approval,
    } = ran;
    let unapproved = approval.as_ref().filter(|a| a.answer != "approved");
    let (final_verdict, plan_rules) = match (&r, &plan_record, unapproved) {
        (Ok(_), _, _) => (verdict::ALLOWED, Vec::new()),
        (Err(_), _, Some(a)) => (verdict::UNAPPROVED, a.rules.clone()),
        (Err(_), Some(p), None) if !p.allow => (verdict::DENIED_BY_PLAN, rule_names(&p.reasons)),
        (Err(_), _, None) => (verdict::FAILED, Vec::new()),
    };
    let outcome = OutcomeRecord {
        time: now_rfc3339(),
        event: "outcome",
        decision_id: record.decision_id.clone(),
        session_id: record.session.session_id.clone(),
        verdict: final_verdict,
        rules: plan_rules,
        rows: None,
        truncated: None,
        masked: Vec::new(),
        error: None,
        plan: plan_record,
        approval,
        timings: Timings {
            execution_us: Some(run_started.elapsed().as_micros() as u64),
            total_us: Some(started.elapsed().as_micros() as u64),
            ..Timings::default()
        },
    };
    (outcome, r)
}

/// The decision part of a call's record: timings, the verdict, its reasons, the kinds.
fn record_checked(record: &mut CallRecord, checked: &crate::policy::Checked) {
    record.timings.analysis_us = Some(checked.analysis_us);
    record.timings.policy_us = Some(checked.policy_us);
    record.timings.cached = checked.cached;
    record.timings.shape_cached = checked.shape_cached;
    record.allow = checked.decision.allow;
    record.reasons = json!(checked.decision.reasons);
    if let Ok(f) = &checked.facts {
        record.kinds = Some(json!(f
            .statements
            .iter()
            .map(|s| s.kind)
            .collect::<Vec<_>>()));
    }
}

/// The `rule` of every reason, in order.
fn rule_names(reasons: &Value) -> Vec<String> {
    reasons
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r["rule"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn exec_message(e: &ExecError) -> String {
    // A session ended or cancelled by someone else keeps its explanation; PostgreSQL's own
    // errors about the query are shown as PostgreSQL wrote them.
    match e {
        ExecError::Postgres(pg) => {
            let mut m = PgError {
                position: None,
                detail: None,
                hint: None,
                ..(**pg).clone()
            }
            .to_string();
            if let Some(p) = pg.position {
                m.push_str(&format!(", at character {p}"));
            }
            if let Some(d) = &pg.detail {
                m.push_str(&format!("\nDETAIL: {d}"));
            }
            if let Some(h) = &pg.hint {
                m.push_str(&format!("\nHINT: {h}"));
            }
            m
        }
        // Where the database is (a DSN's user, host and port) is for the operator's log, not
        // for the agent.
        ExecError::Connect { target, .. }
        | ExecError::ConnectTimeout { target, .. }
        | ExecError::NoAnswer { target, .. } => {
            tracing::warn!("{e}");
            e.to_string().replace(
                &format!("the database {target}"),
                "the database (its address is in the server's log)",
            )
        }
        other => other.to_string(),
    }
}

/// The functions of `snapshot` not built into PostgreSQL that `can_run` lets the caller call
/// (each overload once).
fn callable_functions(
    snapshot: &crate::analysis::snapshot::Snapshot,
    can_run: impl Fn(&str) -> bool,
) -> Vec<Value> {
    let mut functions: Vec<Value> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for f in &snapshot.functions {
        if f.source == crate::analysis::FunctionSource::Builtin
            || f.kind == "procedure"
            || !seen.insert((f.schema.as_str(), f.name.as_str(), f.arguments.as_str()))
        {
            continue;
        }
        if can_run(&format!(
            "SELECT {}.{}()",
            quoted(&f.schema),
            quoted(&f.name)
        )) {
            functions.push(json!({
                "schema": f.schema, "name": f.name, "arguments": f.arguments,
                "kind": f.kind, "volatility": f.volatility, "extension": f.extension,
            }));
        }
    }
    functions
}

/// The tool's JSON for a result, with a `note` when a limit cut it.
fn response_json(result: &crate::execution::QueryResult, limits: &RunLimits) -> Value {
    let mut v = result_json(result);
    if let Some(big) = &result.oversized_row {
        let left = limits
            .max_result_bytes
            .saturating_sub(result.bytes.saturating_sub(big.row_bytes) as u64);
        v["note"] = json!(format!(
            "row {} was not returned, nor any after it: it is {} bytes (column {:?} holds {} of them), more than the {left} bytes left of max_result_bytes = {}; select a shorter expression (left({}, 1000), length({})) or ask for a larger max_result_bytes in the policy's limits",
            big.row, big.row_bytes, big.column, big.column_bytes, limits.max_result_bytes, big.column, big.column,
        ));
    } else if let Some(by) = result.truncated_by {
        let limit = if by == "max_rows" {
            limits.max_rows
        } else {
            limits.max_result_bytes
        };
        v["note"] = json!(format!(
            "the result was cut at {by} = {limit}: more rows exist; narrow the query with WHERE, LIMIT or aggregates"
        ));
    }
    v
}

/// A call the static decision allowed: where and how it runs.
/// What became of an allowed call's query: its result or the agent's message, what the plan
/// step saw, and the person's answer when the plan step asked.
struct Ran {
    result: Result<crate::execution::QueryResult, String>,
    plan: Option<PlanRecord>,
    approval: Option<ApprovalRecord>,
}

/// What the plan step of one call works on.
#[derive(Clone, Copy)]
struct Planning<'a> {
    allowed: &'a Allowed<'a>,
    facts: &'a crate::analysis::Facts,
    sql: &'a str,
    policy: &'a crate::policy::Policy,
    identity: &'a crate::policy::Identity,
}

struct Allowed<'s> {
    pool: &'s crate::execution::Database,
    limits: RunLimits,
    context: &'s crate::policy::DatabaseContext,
    /// The facts, when the policy asks to judge the plan as well.
    explain: Option<crate::analysis::Facts>,
    /// The decision made without the plan.
    decision: crate::policy::Decision,
    /// The masks of the values it returns.
    masks: crate::execution::MaskPlan,
}

impl Sqlguard {
    pub fn new(state: Arc<State>) -> Sqlguard {
        Sqlguard {
            state,
            session_user: Arc::default(),
        }
    }

    /// The identity Teleport's token gave this HTTP request (`None` over stdio), held to the
    /// user who opened the session.
    fn request_identity(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> Result<Option<Arc<crate::policy::Identity>>, String> {
        let Some(id) = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<Arc<crate::policy::Identity>>())
            .cloned()
        else {
            return Ok(None);
        };
        let mut bound = self.session_user.lock().unwrap_or_else(|p| p.into_inner());
        match bound.as_deref() {
            None => *bound = Some(id.user.clone()),
            Some(user) if user != id.user => {
                return Err(format!(
                    "this MCP session was opened by {user}, and the request's token is {}'s: open a session of your own",
                    id.user
                ))
            }
            Some(_) => {}
        }
        Ok(Some(id))
    }

    /// The request's identity, else the server's (stdio: Teleport's login or the local user).
    fn caller(
        &self,
        request: &Option<Arc<crate::policy::Identity>>,
    ) -> Arc<crate::policy::Identity> {
        request
            .clone()
            .unwrap_or_else(|| self.state.identity.current())
    }

    /// Whether the policy lets the caller use `tool`: the refusal's reasons and message.
    fn tool_allowed(
        &self,
        tool: &str,
        identity: &crate::policy::Identity,
    ) -> Result<(), (Value, String)> {
        let d = self.state.policy().tool_allowed(tool, identity);
        if d.allow {
            Ok(())
        } else {
            let reasons: Vec<String> = d
                .reasons
                .iter()
                .map(|r| format!("{} [{}]", r.message, r.rule))
                .collect();
            Err((
                json!(d.reasons),
                format!(
                    "The tool {tool} is denied by the sqlguard policy: {}",
                    reasons.join("; ")
                ),
            ))
        }
    }

    fn list_databases(&self) -> CallToolResult {
        if self.state.databases.is_empty() {
            return tool_error(
                "no databases are configured on this server: start it with database URIs (sqlguard serve teleport://clusters/<cluster>/databases/<name>?dbName=…&dbUser=…) or [[database]] entries in its configuration file",
            );
        }
        let content = self
            .state
            .databases
            .iter()
            .map(|d| {
                ContentBlock::resource(
                    ResourceContents::text(database_yaml(d), d.context.uri.clone())
                        .with_mime_type("application/yaml"),
                )
            })
            .collect();
        CallToolResult::success(content)
    }

    /// Resolves the `database` argument to a served database.
    fn resolve(&self, arg: &str) -> Result<&ServedDatabase, String> {
        let uri = DatabaseUri::parse_resource(arg.trim()).map_err(|e| e.to_string())?;
        self.state.database(&uri.resource()).ok_or_else(|| {
            format!(
                "the database {} is not served by this server: call {TOOL_LIST} to see the databases you can query",
                uri.resource()
            )
        })
    }

    /// The instructions for agents: information_schema is suggested only where the policy
    /// lets this caller read it (a denial for following the instructions would mislead).
    fn instructions(&self) -> String {
        let policy = self.state.policy();
        let readable = self.state.databases.iter().all(|d| {
            let identity = d
                .spec
                .identity
                .clone()
                .map_or_else(|| self.state.identity.current(), Arc::new);
            INFORMATION_SCHEMA_QUERIES.iter().all(|q| {
                policy
                    .check(
                        q,
                        &self.state.analysis,
                        Some(&d.context),
                        &identity,
                        TOOL_QUERY,
                    )
                    .decision
                    .allow
            })
        });
        let mut text = String::from(INSTRUCTIONS);
        if readable {
            text.push_str(INSTRUCTIONS_INFORMATION_SCHEMA);
        }
        text.push('.');
        text
    }

    /// Who calls on `database`: its configured identity when it is reached without Teleport
    /// and the configuration names one, else the Teleport (or local) identity.
    fn caller_on(&self, database: &str) -> Arc<crate::policy::Identity> {
        match self
            .resolve(database)
            .ok()
            .and_then(|d| d.spec.identity.clone())
        {
            Some(id) => Arc::new(id),
            None => self.state.identity.current(),
        }
    }

    /// A call refused before its query is looked at (the tool, a limit): audited, then
    /// `message` for the agent.
    fn refused(
        &self,
        tool: &'static str,
        database: &str,
        identity: &crate::policy::Identity,
        client: Option<ClientRecord>,
        reasons: Value,
        message: &str,
    ) -> CallToolResult {
        let policy = self.state.policy();
        let mut record = self.call_record(tool, database, identity, &policy, client);
        record.rules = rule_names(&reasons);
        record.reasons = reasons;
        match self.audit(&record) {
            Err(refusal) => tool_error(&refusal),
            Ok(()) => tool_error(message),
        }
    }

    /// A `decision` record of a call by `identity` with `policy`: refused until decided.
    fn call_record(
        &self,
        tool: &'static str,
        database: &str,
        identity: &crate::policy::Identity,
        policy: &crate::policy::Policy,
        client: Option<ClientRecord>,
    ) -> CallRecord {
        let served = self.resolve(database).ok();
        CallRecord {
            time: now_rfc3339(),
            event: "decision",
            decision_id: uuid::Uuid::new_v4().to_string(),
            session: SessionRecord {
                session_id: self.state.session_id.clone(),
                client,
                policy_digest: policy.digest().to_string(),
                bundle_revision: policy.bundle().revision.clone(),
            },
            database: served.map_or_else(|| database.to_string(), |d| d.context.uri.clone()),
            labels: served.map(|d| d.context.labels.clone()).unwrap_or_default(),
            identity: Caller::of(identity),
            tool,
            resource: None,
            query: None,
            allow: false,
            verdict: verdict::DENIED,
            rules: Vec::new(),
            reasons: Value::Null,
            kinds: None,
            limits: None,
            error: None,
            approval: None,
            timings: Timings::default(),
        }
    }

    async fn query(
        &self,
        database: &str,
        sql: &str,
        client: Option<ClientRecord>,
        approver: &Approver,
        identity: Arc<crate::policy::Identity>,
    ) -> CallToolResult {
        let state = &self.state;
        let policy = state.policy();
        let started = Instant::now();
        let mut record = self.call_record(TOOL_QUERY, database, &identity, &policy, client);
        record.query = Some(QueryText::new(
            sql,
            state.audit_query == AuditQuery::Hash,
            state.audit_query_max_bytes,
        ));
        let decided = self
            .decide(database, sql, &policy, &identity, &mut record)
            .await;
        record.timings.total_us = Some(started.elapsed().as_micros() as u64);
        record.rules = rule_names(&record.reasons);
        let allowed = match decided {
            Ok(run) => run,
            Err(message) => {
                if record.allow {
                    // Allowed, but there is no route to the database.
                    record.verdict = verdict::FAILED;
                }
                // Refused, or no route to the database: nothing is sent.
                if let Err(refusal) = self.audit(&record) {
                    return tool_error(&refusal);
                }
                return tool_error(&message);
            }
        };
        if let Err(refusal) = self
            .approve_first(&allowed, sql, approver, &mut record, started)
            .await
        {
            return tool_error(&refusal);
        }
        record.event = "intent";
        record.verdict = verdict::PENDING;
        // The intent is on disk before the query can reach the database.
        if let Err(refusal) = self.audit(&record) {
            return tool_error(&refusal);
        }
        let run_started = Instant::now();
        let limits = allowed.limits;
        let ran = self.run(&allowed, sql, &policy, &identity, approver).await;
        let (mut outcome, r) = outcome_of(&record, ran, run_started, started);
        let response = match r {
            Ok(result) => {
                outcome.rows = Some(result.rows.as_ref().map_or(0, Vec::len));
                outcome.truncated = Some(result.truncated);
                outcome.masked = result
                    .masked
                    .iter()
                    .map(|m| crate::audit::MaskedRecord {
                        column: m.column.clone(),
                        source: m.source.clone(),
                    })
                    .collect();
                Ok(response_json(&result, &limits))
            }
            Err(m) => {
                outcome.error = Some(m.clone());
                Err(m)
            }
        };
        if let Err(e) = self.audit(&outcome) {
            // The query ran and its intent is logged; the result still goes back.
            tracing::error!("AUDIT LOG WRITE FAILED for an outcome: {e}");
        }
        match response {
            Ok(v) => CallToolResult::success(vec![ContentBlock::text(v.to_string())]),
            Err(message) => tool_error(&message),
        }
    }

    /// An ask is answered here, before anything runs, unless the plan is judged too: then the
    /// person is asked once, after the plan step, with every reason. `Err` with the agent's
    /// message when the call is not approved (its `decision` record written).
    async fn approve_first(
        &self,
        allowed: &Allowed<'_>,
        sql: &str,
        approver: &Approver,
        record: &mut CallRecord,
        started: Instant,
    ) -> Result<(), String> {
        if !allowed.decision.asks() || allowed.explain.is_some() {
            return Ok(());
        }
        let asks = &allowed.decision.ask;
        let asked = approver.ask(&allowed.context.uri, sql, asks, "query").await;
        record.approval = Some(approval_record("query", asks, &asked));
        record.timings.total_us = Some(started.elapsed().as_micros() as u64);
        if asked.approved() {
            return Ok(());
        }
        record.allow = false;
        record.verdict = verdict::UNAPPROVED;
        self.audit(record)?;
        Err(asked.refusal(asks, &allowed.context.uri))
    }

    /// Runs an allowed call's query (after judging its plan, when the policy asks, and asking
    /// the person when the plan step asks).
    async fn run(
        &self,
        allowed: &Allowed<'_>,
        sql: &str,
        policy: &crate::policy::Policy,
        identity: &crate::policy::Identity,
        approver: &Approver,
    ) -> Ran {
        let Some(facts) = &allowed.explain else {
            let result = allowed
                .pool
                .execute_masked(sql, allowed.limits, &allowed.masks)
                .await
                .map_err(|e| exec_message(&e));
            return Ran {
                result,
                plan: None,
                approval: None,
            };
        };
        let planning = Planning {
            allowed,
            facts,
            sql,
            policy,
            identity,
        };
        let first = self.run_planned(&planning, &[]).await;
        let (plan, verdict, judged_us) = match first {
            Ok((Planned::Ran { plan, result }, judged_us)) => {
                return Ran {
                    result: Ok(result),
                    plan: Some(PlanRecord::of(&plan, true, Value::Null, judged_us)),
                    approval: None,
                }
            }
            Ok((Planned::Refused { plan, verdict }, judged_us)) => (plan, verdict, judged_us),
            Err(e) => {
                return Ran {
                    result: Err(exec_message(&e)),
                    plan: None,
                    approval: None,
                }
            }
        };
        if !verdict.reasons.is_empty() || verdict.ask.is_empty() {
            let plan = PlanRecord::of(&plan, false, json!(verdict.reasons), judged_us);
            let mut m = verdict.message();
            m.push_str("\nNothing was run: PostgreSQL only planned the query. Rewrite it as described and call the tool again.");
            return Ran {
                result: Err(m),
                plan: Some(plan),
                approval: None,
            };
        }
        // The plan passed but asks: the person answers now, with every reason (static and
        // plan), and only an approval runs the statement.
        let asks = &verdict.ask;
        let asked = approver.ask(&allowed.context.uri, sql, asks, "plan").await;
        let approval = Some(approval_record("plan", asks, &asked));
        let plan_seen = Some(PlanRecord::of(&plan, true, json!(asks), judged_us));
        if !asked.approved() {
            return Ran {
                result: Err(asked.refusal(asks, &allowed.context.uri)),
                plan: plan_seen,
                approval,
            };
        }
        let result = self.run_approved(&planning, asks).await;
        Ran {
            result,
            plan: plan_seen,
            approval,
        }
    }

    /// Runs a query whose plan a person approved for `asks`: planned and judged again in the
    /// transaction it runs in, it runs if the plan still asks for nothing beyond those rules
    /// and nothing denies it.
    async fn run_approved(
        &self,
        planning: &Planning<'_>,
        asks: &[Reason],
    ) -> Result<crate::execution::QueryResult, String> {
        let approved: Vec<&str> = asks.iter().map(|r| r.rule.as_str()).collect();
        let again = self.run_planned(planning, &approved).await;
        match again {
            Ok((Planned::Ran { result, .. }, _)) => Ok(result),
            Ok((Planned::Refused { verdict, .. }, _)) if verdict.reasons.is_empty() => Err(format!(
                "{}\nThe plan changed after the person approved it and now needs another approval; nothing was run: call the tool again.",
                verdict.ask_message()
            )),
            Ok((Planned::Refused { verdict, .. }, _)) => Err(format!(
                "{}\nThe plan changed after the person approved it; nothing was run: rewrite the query as described and call the tool again.",
                verdict.message()
            )),
            Err(e) => Err(exec_message(&e)),
        }
    }

    /// Explains the allowed query and decides again with `input.plan`: it runs only if that
    /// decision allows it without asking anything beyond `approved` (the rules a person has
    /// approved for this call). Returns what happened and the plan decision's time.
    async fn run_planned(
        &self,
        planning: &Planning<'_>,
        approved: &[&str],
    ) -> Result<(Planned<crate::policy::Decision>, u64), ExecError> {
        let Planning {
            allowed,
            facts,
            sql,
            policy,
            identity,
        } = *planning;
        let mut judged_us = 0;
        let planned = allowed
            .pool
            .execute_planned(sql, allowed.limits, &allowed.masks, |plan| {
                let started = Instant::now();
                let input = crate::policy::PolicyInput {
                    query: Some(facts),
                    database: Some(allowed.context),
                    identity,
                    tool: TOOL_QUERY,
                    plan: Some(plan),
                };
                let decision = policy.decide_with_plan(&input, &allowed.decision);
                judged_us = started.elapsed().as_micros() as u64;
                let unapproved = decision
                    .ask
                    .iter()
                    .any(|r| !approved.contains(&r.rule.as_str()));
                if !decision.allow {
                    Err(decision)
                } else if decision.asks() && unapproved {
                    Err(crate::policy::Decision {
                        allow: false,
                        ..decision
                    })
                } else {
                    Ok(())
                }
            })
            .await?;
        Ok((planned, judged_us))
    }

    /// Appends a record; `Err` with the agent's message when the call must be refused because
    /// the log cannot be written (`audit_fail_closed`).
    fn audit<T: serde::Serialize + super::metrics::Observed>(
        &self,
        record: &T,
    ) -> Result<(), String> {
        record.observe(&self.state.metrics);
        self.state.ship(record);
        let Some(log) = self.state.audit.as_ref() else {
            return Ok(());
        };
        match log.append(record) {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::error!("AUDIT LOG WRITE FAILED: {e}");
                if self.state.audit_fail_closed {
                    Err(format!(
                        "the audit log could not be written ({e}), and this server is configured to refuse calls it cannot audit: ask the operator to fix {}",
                        log.path().display()
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Analyzes and decides `sql` on `db` against its catalog, reading the catalog again when
    /// the query names something it lacks (an extension created while serving).
    async fn check_on(
        &self,
        db: &ServedDatabase,
        sql: &str,
        policy: &crate::policy::Policy,
        identity: &crate::policy::Identity,
    ) -> (
        crate::policy::Checked,
        Arc<crate::analysis::AnalysisOptions>,
    ) {
        let opts = db.analysis(&self.state.analysis).await;
        db.lint(&opts, policy);
        let checked = policy.check(sql, &opts, Some(&db.context), identity, TOOL_QUERY);
        if let (Ok(facts), Some(live)) = (&checked.facts, &db.catalog) {
            if let Some(fresh) = live.refresh_for(facts, db.backend.ready().ok()).await {
                let checked = policy.check(sql, &fresh, Some(&db.context), identity, TOOL_QUERY);
                return (checked, fresh);
            }
        }
        (checked, opts)
    }

    /// Resolves the database and decides: the pool and limits to run with, or the message
    /// for the agent. Fills the decision part of `record`.
    async fn decide<'s>(
        &'s self,
        database: &str,
        sql: &str,
        policy: &crate::policy::Policy,
        identity: &crate::policy::Identity,
        record: &mut CallRecord,
    ) -> Result<Allowed<'s>, String> {
        let state = &self.state;
        let deny = |record: &mut CallRecord, rule: &str, message: String| {
            record.allow = false;
            record.reasons = json!([{"rule": rule, "message": message, "statement": -1}]);
            Err(message)
        };
        let db = match self.resolve(database) {
            Ok(d) => d,
            Err(m) => return deny(record, "unknown_database", m),
        };
        record.database = db.context.uri.clone();
        if sql.len() > state.max_query_bytes {
            return deny(
                record,
                "query_too_large",
                format!("the query is {} bytes, over this server's limit of {} bytes: send a shorter query", sql.len(), state.max_query_bytes),
            );
        }
        let (checked, opts) = self.check_on(db, sql, policy, identity).await;
        record_checked(record, &checked);
        if !checked.decision.allow {
            let mut m = checked.decision.message();
            m.push_str("\nRewrite the query as described and call the tool again.");
            return Err(m);
        }
        if checked.decision.asks() {
            // Allowed once a person approves: the asks are the reasons on record.
            record.reasons = json!(checked.decision.ask);
        }
        let masks = match crate::execution::MaskPlan::new(
            &checked.decision.mask,
            opts.shared_snapshot(),
            state.mask_key.clone(),
        ) {
            Ok(m) => m,
            Err(why) => return deny(record, "mask_unavailable", why),
        };
        let limits = checked.decision.limits;
        record.limits = Some(json!(limits));
        let pool = match db.backend.ready() {
            Ok(pool) => pool,
            Err(why) => {
                record.error = Some(why.to_string());
                return Err(why.to_string());
            }
        };
        Ok(Allowed {
            pool,
            limits: RunLimits {
                max_rows: limits.max_rows,
                max_result_bytes: limits.max_result_bytes,
                statement_timeout_ms: limits.statement_timeout_ms,
                work_mem_kb: limits.work_mem_kb,
                temp_file_limit_kb: limits.temp_file_limit_kb,
            },
            context: &db.context,
            // The static decision allowed the call; the policy asks to judge the plan too.
            explain: checked
                .decision
                .explain
                .then_some(checked.facts)
                .and_then(Result::ok),
            decision: checked.decision,
            masks,
        })
    }

    /// The relations and columns this identity's policy lets it read, with column types as
    /// PostgreSQL writes them, and (from the catalog snapshot) the extensions installed and
    /// the non-built-in functions the policy lets it call.
    async fn schema(
        &self,
        d: &ServedDatabase,
        identity: &crate::policy::Identity,
    ) -> Result<Value, String> {
        let pool = d.backend.ready().map_err(str::to_string)?;
        let limits = RunLimits {
            max_rows: 20_000,
            max_result_bytes: 8 << 20,
            statement_timeout_ms: 10_000,
            ..RunLimits::default()
        };
        let r = pool
            .execute(SCHEMA_SQL, limits)
            .await
            .map_err(|e| exec_message(&e))?;
        let policy = self.state.policy();
        let opts = d.analysis(&self.state.analysis).await;
        let can_run = |q: &str| {
            policy
                .check(q, &opts, Some(&d.context), identity, TOOL_QUERY)
                .decision
                .allow
        };
        // The caller's masks, and the tables each column's rows come from too (a partition's
        // and a child's are its parents').
        let masks = policy
            .check("SELECT 1", &opts, Some(&d.context), identity, TOOL_QUERY)
            .decision
            .mask
            .columns;
        let mask_of = |schema: &str, table: &str, column: &str| {
            let own = format!("{schema}.{table}");
            let ancestors = opts
                .snapshot()
                .and_then(|snap| snap.lineage(schema, table))
                .map(|l| l.ancestors.clone())
                .unwrap_or_default();
            std::iter::once(own)
                .chain(ancestors)
                .find_map(|t| masks.get(&format!("{t}.{column}")))
                .map(|m| json!(m))
        };
        let relations = readable_relations(r.rows.unwrap_or_default(), &can_run, &mask_of);
        let mut out = json!({
            "database": d.context.uri,
            "note": "Only the relations and columns the policy lets you read are listed. A column with a `mask` comes back masked, and may only be selected as it is (no condition, sort, grouping, function or cast over it). PostgreSQL's built-in functions may be called unless volatile or in a risk category; of the other functions, only those listed under `functions` may be called.",
            "relations": relations,
        });
        if let Some(snapshot) = opts.snapshot() {
            out["server_version"] = json!(snapshot.server.version);
            out["extensions"] = json!(snapshot.extensions);
            out["functions"] = json!(callable_functions(snapshot, can_run));
        }
        Ok(out)
    }
}

impl ServerHandler for Sqlguard {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("sqlguard", env!("CARGO_PKG_VERSION")))
        .with_instructions(self.instructions())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let request = self
            .request_identity(&context)
            .map_err(|m| ErrorData::invalid_request(m, None))?;
        let identity = self.caller(&request);
        // Tools the policy denies this identity are not listed (Teleport's MCP RBAC).
        let visible = tools()
            .into_iter()
            .filter(|t| self.tool_allowed(&t.name, &identity).is_ok())
            .collect();
        Ok(ListToolsResult::with_all_items(visible))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.as_ref();
        let tool = match name {
            TOOL_LIST => TOOL_LIST,
            TOOL_QUERY => TOOL_QUERY,
            _ => {
                return Ok(tool_error(&format!(
                    "there is no tool {name}: use {TOOL_LIST} or {TOOL_QUERY}"
                ))
                .into())
            }
        };
        let client = client_of(&context);
        let caller = match self.request_identity(&context) {
            Ok(c) => c,
            Err(m) => return Ok(tool_error(&m).into()),
        };
        let args = request.arguments.unwrap_or_default();
        let get = |k: &str| args.get(k).and_then(Value::as_str);
        if let Err((reasons, m)) = self.tool_allowed(name, &self.caller(&caller)) {
            let database = get("database").unwrap_or("");
            let identity = self.caller(&caller);
            return Ok(self
                .refused(tool, database, &identity, client, reasons, &m)
                .into());
        }
        if tool == TOOL_LIST {
            let policy = self.state.policy();
            let identity = self.caller(&caller);
            let mut record = self.call_record(tool, "", &identity, &policy, client);
            record.allow = true;
            record.verdict = verdict::ALLOWED;
            record.reasons = json!([]);
            if let Err(refusal) = self.audit(&record) {
                return Ok(tool_error(&refusal).into());
            }
            return Ok(self.list_databases().into());
        }
        let (Some(database), Some(query)) = (get("database"), get("query")) else {
            return Ok(tool_error(&format!(
                "{TOOL_QUERY} needs two string arguments: database (a URI such as {EXPECTED_FORMAT}, from {TOOL_LIST}) and query"
            ))
            .into());
        };
        // A verified request identity (HTTP) wins over the configured and the server's.
        let identity = caller.unwrap_or_else(|| self.caller_on(database));
        let _running = match self.state.limiter.start(&identity.user) {
            Ok(running) => running,
            Err((rule, m)) => {
                let reasons = json!([{"rule": rule, "message": m, "statement": -1}]);
                return Ok(self
                    .refused(tool, database, &identity, client, reasons, &m)
                    .into());
            }
        };
        let approver = Approver {
            peer: context.peer.clone(),
            timeout: self.state.approval_timeout,
            cancelled: context.ct.clone(),
        };
        Ok(self
            .query(database, query, client, &approver, identity)
            .await
            .into())
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let mut resources = Vec::new();
        for d in &self.state.databases {
            let mut r = Resource::new(
                d.context.uri.clone(),
                format!("{} Database", d.spec.uri.name),
            );
            r.mime_type = Some("application/yaml".into());
            if !d.spec.description.is_empty() {
                r.description = Some(d.spec.description.clone());
            }
            resources.push(r);
            let mut s = Resource::new(schema_uri(d), format!("{} Schema", d.spec.uri.name));
            s.mime_type = Some("application/json".into());
            s.description = Some("Relations and columns this identity may read".into());
            resources.push(s);
        }
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        // Every read is in the chain, found or not.
        let policy = self.state.policy();
        let served = self
            .state
            .databases
            .iter()
            .find(|d| uri == d.context.uri || uri == schema_uri(d));
        let request = self
            .request_identity(&context)
            .map_err(|m| ErrorData::invalid_request(m, None))?;
        let identity = match (request, served.and_then(|d| d.spec.identity.clone())) {
            (Some(id), _) => id,
            (None, Some(id)) => Arc::new(id),
            (None, None) => self.state.identity.current(),
        };
        let database = served.map_or("", |d| d.context.uri.as_str());
        let mut record =
            self.call_record(TOOL_READ, database, &identity, &policy, client_of(&context));
        record.resource = Some(uri.to_string());
        record.allow = served.is_some();
        record.verdict = if served.is_some() {
            verdict::ALLOWED
        } else {
            verdict::FAILED
        };
        record.reasons = json!([]);
        if served.is_none() {
            record.error = Some("no such resource".into());
        }
        if let Err(refusal) = self.audit(&record) {
            return Err(ErrorData::internal_error(refusal, None));
        }
        for d in &self.state.databases {
            if uri == d.context.uri {
                let c = ResourceContents::text(database_yaml(d), uri)
                    .with_mime_type("application/yaml");
                return Ok(ReadResourceResult::new(vec![c]).into());
            }
            if uri == schema_uri(d) {
                let v = self
                    .schema(d, &identity)
                    .await
                    .map_err(|e| ErrorData::internal_error(e, None))?;
                let c =
                    ResourceContents::text(v.to_string(), uri).with_mime_type("application/json");
                return Ok(ReadResourceResult::new(vec![c]).into());
            }
        }
        Err(ErrorData::resource_not_found(
            format!("no resource {uri}: list the resources to see them"),
            None,
        ))
    }
}
