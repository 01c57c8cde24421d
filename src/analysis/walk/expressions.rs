//! Expressions: `FuncCall` (and record builders, settings functions), `A_Expr` and the
//! operators it runs (implicit ones included), `TypeCast`/`TypeName` with the casts and domain
//! checks a conversion runs, constants, and the types of operands where the query fixes them.

use super::*;

/// Functions that convert values to the row type of their first argument.
pub(super) const RECORD_BUILDERS: &[&str] = &[
    "json_populate_record",
    "json_populate_recordset",
    "jsonb_populate_record",
    "jsonb_populate_recordset",
    "jsonb_populate_record_valid",
    "populate_record",
];

/// PostgreSQL's own scalar types a query often names in a cast (`x::int`, `date '…'`): the
/// name in the grammar's tree, and the type as `format_type` writes it (what a snapshot's
/// `left_accepts` lists). Each is one type: a cast to it makes an operand of exactly it.
pub(super) const BUILTIN_TYPES: &[(&str, [&str; 1])] = &[
    ("int2", ["smallint"]),
    ("int4", ["integer"]),
    ("int8", ["bigint"]),
    ("float4", ["real"]),
    ("float8", ["double precision"]),
    ("numeric", ["numeric"]),
    ("bool", ["boolean"]),
    ("text", ["text"]),
    ("varchar", ["character varying"]),
    ("bpchar", ["character"]),
    ("name", ["name"]),
    ("date", ["date"]),
    ("time", ["time without time zone"]),
    ("timetz", ["time with time zone"]),
    ("timestamp", ["timestamp without time zone"]),
    ("timestamptz", ["timestamp with time zone"]),
    ("interval", ["interval"]),
    ("json", ["json"]),
    ("jsonb", ["jsonb"]),
    ("bytea", ["bytea"]),
    ("uuid", ["uuid"]),
    ("inet", ["inet"]),
    ("cidr", ["cidr"]),
    ("oid", ["oid"]),
];

/// Function risk categories that write or act outside the query, so the statement is not
/// read-only (reading server files or sleeping is denied by policy, not here).
pub(super) const WRITING_RISKS: &[&str] = &[
    "dynamic_sql",
    "external_session",
    "large_objects",
    "backend_control",
    "advisory_locks",
    "sequences",
    "notify",
    "configuration",
    "statistics_reset",
    "replication_backup",
    "maintenance",
    "scheduler",
];

/// Do two type names (`format_type`'s, or as written) name the same type, or one an array
/// of the other? Compared without schema and quotes: a name shared by two schemas matches
/// both (more casts counted, never fewer).
pub(super) fn same_type(a: &str, b: &str) -> bool {
    fn base(t: &str) -> &str {
        let mut t = t.trim();
        while let Some(inner) = t.strip_suffix("[]") {
            t = inner.trim_end();
        }
        let t = t.rsplit('.').next().unwrap_or(t);
        t.trim_matches('"')
    }
    base(a) == base(b)
}

impl<'t, 'a> Walker<'t, 'a> {
    pub(super) fn name_list(&self, list: Id) -> Vec<String> {
        self.tree
            .members(list)
            .iter()
            .filter_map(|m| wrapper(self.tree, m.id()))
            .filter(|(ty, _)| *ty == "String")
            .filter_map(|(_, s)| self.tree.get_str(s, "sval").map(str::to_string))
            .collect()
    }

    pub(super) fn func_call(&mut self, body: Id, context: &str) {
        let names = self
            .tree
            .get(body, "funcname")
            .map(|l| self.name_list(l))
            .unwrap_or_default();
        // Only a call of a settings function is looked at again (a copy: it reads the tree).
        let setting = match self.record_function_with(&names, context, Some(body)) {
            Some(c) => {
                let setting = matches!(c.name.as_str(), "current_setting" | "set_config");
                let setting = setting.then(|| c.clone());
                self.aggregate_call(body);
                setting
            }
            None => None,
        };
        if let Some(call) = setting {
            self.setting_function(&call, body);
        }
        if let Some(name) = names.last() {
            if RECORD_BUILDERS.contains(&name.as_str()) {
                self.record_builder(name, body);
            }
        }
        self.fields("FuncCall", body, READ, &["funcname"]);
    }

    /// `json_populate_record(base, …)` and its kin convert values to the row type of their
    /// first argument, which runs the `CHECK` of every domain inside it. Written as a cast
    /// (`NULL::t`), the type is named and [`Walker::type_name`] counts its checks; any other
    /// argument (a whole-row reference `w`, a column, a subquery) has a type the analysis does
    /// not know, so every domain check of the database counts.
    pub(super) fn record_builder(&mut self, name: &str, body: Id) {
        let Some(snap) = self.opts.snapshot() else {
            return;
        };
        let first = self
            .tree
            .get(body, "args")
            .and_then(|l| self.tree.members(l).first().map(|m| m.id));
        if let Some(("TypeCast", _)) = first.and_then(|f| wrapper(self.tree, f)) {
            return;
        }
        let path = self.opts.effective_path();
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for cast in snap.casts.iter().filter(|c| c.via == "domain_check") {
            let key = (cast.function_schema.as_str(), cast.function_name.as_str());
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let what = format!("the row type of {name}()'s first argument");
            self.facts
                .functions
                .push(resolve::cast(snap, path, cast, what));
        }
    }

    /// Records a call of `names` (`[schema.]name`) and returns it.
    pub(super) fn record_function(
        &mut self,
        names: &[String],
        context: &str,
    ) -> Option<&FunctionCall> {
        self.record_function_with(names, context, None)
    }

    /// Records a call; `node`: its `FuncCall`, whose arguments can rule out overloads.
    pub(super) fn record_function_with(
        &mut self,
        names: &[String],
        context: &str,
        node: Option<Id>,
    ) -> Option<&FunctionCall> {
        let (schema, name) = match names {
            [name] => (None, name.clone()),
            [.., schema, name] => (Some(schema.clone()), name.clone()),
            [] => return None,
        };
        let call = match self.opts.snapshot() {
            Some(snap) => {
                let path = self.opts.effective_path();
                // Unqualified names were resolved once per snapshot. Only when that is not
                // all PostgreSQL's own do the call's arguments matter: which overloads they
                // allow decides the facts.
                let untyped = match (&schema, self.opts.resolutions()) {
                    (None, Some(r)) => r.function(&name, context),
                    _ => None,
                }
                .unwrap_or_else(|| {
                    resolve::function(snap, path, schema.clone(), name.clone(), context)
                });
                match node {
                    Some(node) if untyped.source != FunctionSource::Builtin => {
                        let (types, unpositional) = self.call_arguments(node);
                        let args = Arguments {
                            types: &types,
                            unpositional,
                        };
                        resolve::function_for(snap, path, schema, name, context, Some(&args))
                    }
                    _ => untyped,
                }
            }
            None => self.function_from_static(schema, name, context),
        };
        if call
            .risks
            .iter()
            .any(|r| WRITING_RISKS.contains(&r.as_str()))
        {
            self.construct(
                "side_effect_function",
                format!("{}() ({})", call.name, call.risks.join(", ")),
            );
        }
        self.facts.functions.push(call);
        self.facts.functions.last()
    }

    /// A `FuncCall`'s arguments: the type of each when the query fixes it, and whether they
    /// are not positional (named arguments, an explicit `VARIADIC`). `count(*)` has none.
    pub(super) fn call_arguments(&self, body: Id) -> (Vec<Option<&'static [&'static str]>>, bool) {
        let t = self.tree;
        let mut unpositional = t.get_bool(body, "func_variadic");
        let mut types = Vec::new();
        if let Some(args) = t.get(body, "args") {
            for Member { id: arg, .. } in t.members(args) {
                if matches!(wrapper(t, *arg), Some(("NamedArgExpr", _))) {
                    unpositional = true;
                }
                types.push(self.operand_type(*arg));
            }
        }
        (types, unpositional)
    }

    /// A call resolved against PostgreSQL 15's built-ins only.
    pub(super) fn function_from_static(
        &self,
        schema: Option<String>,
        name: String,
        context: &str,
    ) -> FunctionCall {
        let cat = catalog();
        let qualified = schema.is_some();
        let (schema, builtin) = match schema {
            Some(s) => {
                let b = cat.function(&s, &name);
                (Some(s), b)
            }
            None => {
                // Walk the path: a user schema met before the built-in's schema could hold a
                // function of the same name (threat model, class 11), so the call is not
                // known to be the built-in.
                let mut found = (None, None);
                for s in self.opts.effective_search_path() {
                    if is_system_schema(s) {
                        if let Some(b) = cat.function(s, &name) {
                            found = (Some(s.to_string()), Some(b));
                            break;
                        }
                    } else {
                        break;
                    }
                }
                found
            }
        };
        match (schema, builtin) {
            // A built-in: the unknown call's facts, with what the static catalog knows.
            (Some(s), Some(b)) => FunctionCall {
                volatility: b.volatility,
                builtin: true,
                source: FunctionSource::Builtin,
                qualified,
                ..resolve::unknown(Some(s), name, context)
            },
            (schema, _) => resolve::unknown(schema, name, context),
        }
    }

    /// `current_setting('x')` reads a setting; `set_config('x', v, local)` changes one
    /// (threat model, classes 2 and 10).
    pub(super) fn setting_function(&mut self, call: &FunctionCall, body: Id) {
        let is_catalog = call.schema.as_deref().is_none_or(|s| s == "pg_catalog");
        if !is_catalog {
            return;
        }
        let args: Vec<Id> = self
            .tree
            .get(body, "args")
            .map(|a| self.tree.members(a).iter().map(Member::id).collect())
            .unwrap_or_default();
        let literal = |i: usize| args.get(i).and_then(|a| self.string_literal(*a));
        match call.name.as_str() {
            "current_setting" => self.facts.settings.push(SettingAccess {
                name: literal(0).map(|s| s.to_lowercase()),
                action: "read".into(),
                local: false,
                value: None,
            }),
            "set_config" => {
                let local = literal(2).map(|s| s == "true" || s == "t");
                self.facts.settings.push(SettingAccess {
                    name: literal(0).map(|s| s.to_lowercase()),
                    action: "write".into(),
                    local: local.unwrap_or(false),
                    value: literal(1),
                })
            }
            _ => {}
        }
    }

    /// The text of a string constant (also through a cast such as `'x'::text`).
    pub(super) fn string_literal(&self, id: Id) -> Option<String> {
        let (ty, body) = wrapper(self.tree, id)?;
        match ty {
            "A_Const" => {
                let t = self.tree;
                for key in ["sval", "fval", "ival", "boolval"] {
                    if let Some(inner) = t.get(body, key) {
                        return match t.get(inner, key).map(|v| t.value(v)) {
                            Some(Value::String(s)) => Some(s.to_string()),
                            Some(Value::Number(n)) => Some(n.to_string()),
                            Some(Value::Int(n)) => Some(n.to_string()),
                            Some(Value::Bool(b)) => Some(b.to_string()),
                            _ => Some(match key {
                                "ival" => "0".into(),
                                "boolval" => "false".into(),
                                _ => String::new(),
                            }),
                        };
                    }
                }
                None
            }
            "TypeCast" => self
                .tree
                .get(body, "arg")
                .and_then(|a| self.string_literal(a)),
            _ => None,
        }
    }

    /// `BETWEEN` runs `a >= x AND a <= y` (`NOT BETWEEN`: `a < x OR a > y`); `SYMMETRIC` also
    /// with x and y swapped, so its bounds' types are not known.
    fn between(&mut self, kind: &str, lexpr: Option<Id>, rexpr: Option<Id>) {
        let snapshot = self.opts.snapshot().is_some();
        let typed = |side: Option<Id>| side.filter(|_| snapshot).and_then(|e| self.operand_type(e));
        let bounds: Vec<Id> = rexpr.map(|r| self.list_items(r)).unwrap_or_default();
        let symmetric = kind.ends_with("_SYM");
        let bound = |i: usize| {
            if symmetric {
                None
            } else {
                typed(bounds.get(i).copied())
            }
        };
        let left = typed(lexpr);
        let (low, high) = if kind.starts_with("AEXPR_NOT") {
            ("<", ">")
        } else {
            (">=", "<=")
        };
        for (op, right) in [(low, bound(0)), (high, bound(1))] {
            let operands = Operands {
                prefix: false,
                left,
                right,
            };
            self.operator(&[op.to_string()], operands);
        }
    }

    pub(super) fn a_expr(&mut self, body: Id, ctx: Ctx) {
        // Every kind names its operator (`IN` and `BETWEEN` the comparisons they use, `LIKE`
        // `~~`), except the boolean connectives, which are not operators.
        if let Some(list) = self.tree.get(body, "name") {
            let kind = self.tree.get_str(body, "kind").unwrap_or("");
            let lexpr = self.tree.get(body, "lexpr");
            let rexpr = self.tree.get(body, "rexpr");
            // Operand types matter only to pick among a snapshot's operators.
            let snapshot = self.opts.snapshot().is_some();
            let typed =
                |side: Option<Id>| side.filter(|_| snapshot).and_then(|e| self.operand_type(e));
            match kind {
                "AEXPR_BETWEEN"
                | "AEXPR_NOT_BETWEEN"
                | "AEXPR_BETWEEN_SYM"
                | "AEXPR_NOT_BETWEEN_SYM" => self.between(kind, lexpr, rexpr),
                _ => {
                    let names = self.name_list(list);
                    // `a op b`, `- b`, `a IS DISTINCT FROM b`, `NULLIF(a, b)`: one operator
                    // on these two operands. The others (`IN`, `ANY`, `LIKE`, …) coerce
                    // their operands first, so their types are not known here.
                    let operands = match kind {
                        "AEXPR_OP" | "AEXPR_DISTINCT" | "AEXPR_NOT_DISTINCT" | "AEXPR_NULLIF"
                        | "AEXPR_LIKE" | "AEXPR_ILIKE" | "AEXPR_SIMILAR" => Operands {
                            prefix: lexpr.is_none(),
                            left: typed(lexpr),
                            right: typed(rexpr),
                        },
                        // `a IN (x, y)` compares values of the types of `a`, `x` and `y`
                        // (each pair, or all coerced to one of them): known when they are
                        // all the same.
                        "AEXPR_IN" => {
                            let items: Vec<Id> =
                                rexpr.map(|r| self.list_items(r)).unwrap_or_default();
                            let left = typed(lexpr);
                            let same =
                                left.is_some() && items.iter().all(|i| typed(Some(*i)) == left);
                            let known = if same { left } else { None };
                            Operands {
                                prefix: false,
                                left: known,
                                right: known,
                            }
                        }
                        // `a op ANY (array)`: `a` and the array's element type.
                        "AEXPR_OP_ANY" | "AEXPR_OP_ALL" => Operands {
                            prefix: false,
                            left: typed(lexpr),
                            right: None,
                        },
                        _ => Operands::INFIX,
                    };
                    self.operator(&names, operands);
                }
            }
        }
        self.fields("A_Expr", body, ctx, &["name"]);
    }

    /// The operands of a comparison PostgreSQL makes by name (`x IN (SELECT …)`,
    /// `x op ANY (SELECT …)`, `CASE x WHEN …`): the left one is `field`'s value, the right
    /// one's type is unknown. `typed`: whether the left one's type counts (not for a
    /// `SortBy`'s `USING`).
    pub(super) fn compared(&self, body: Id, typed: bool, field: &str) -> Operands {
        let left = match (typed, self.opts.snapshot()) {
            (true, Some(_)) => self
                .tree
                .get(body, field)
                .and_then(|e| self.operand_type(e)),
            _ => None,
        };
        Operands {
            prefix: false,
            left,
            right: None,
        }
    }

    /// The elements of a `List` node (or of a plain array).
    pub(super) fn list_items(&self, id: Id) -> Vec<Id> {
        let list = match wrapper(self.tree, id) {
            Some(("List", body)) => self.tree.get(body, "items"),
            _ => Some(id),
        };
        list.map(|l| self.tree.ids(l).collect()).unwrap_or_default()
    }

    /// The types an operand may have, when the query fixes them: a numeric or boolean
    /// constant, a cast to one of PostgreSQL's own types, a keyword such as `current_date`, or
    /// a column of such a type. Only the constant's kind is
    /// read, never its value (see [`Tree::constant_kind`]).
    pub(super) fn operand_type(&self, id: Id) -> Option<&'static [&'static str]> {
        let (ty, body) = wrapper(self.tree, id)?;
        match ty {
            // `42` is an integer; `3000000000` a bigint and `1.5` a numeric: the scanner
            // makes both the same kind of token.
            "A_Const" => match self.tree.constant_kind(body)? {
                "ival" => Some(&["integer"]),
                "fval" => Some(&["bigint", "numeric"]),
                "boolval" => Some(&["boolean"]),
                _ => None,
            },
            "TypeCast" => self.builtin_type(self.tree.get(body, "typeName")?),
            "ColumnRef" => self.column_type(body),
            // `current_date`, `now`'s keywords and the like: keywords, never looked up by
            // name, so their type is fixed by the grammar.
            "SQLValueFunction" => match self.tree.get_str(body, "op")? {
                "SVFOP_CURRENT_DATE" => Some(&["date"]),
                "SVFOP_CURRENT_TIME" | "SVFOP_CURRENT_TIME_N" => Some(&["time with time zone"]),
                "SVFOP_CURRENT_TIMESTAMP" | "SVFOP_CURRENT_TIMESTAMP_N" => {
                    Some(&["timestamp with time zone"])
                }
                "SVFOP_LOCALTIME" | "SVFOP_LOCALTIME_N" => Some(&["time without time zone"]),
                "SVFOP_LOCALTIMESTAMP" | "SVFOP_LOCALTIMESTAMP_N" => {
                    Some(&["timestamp without time zone"])
                }
                _ => Some(&["name"]),
            },
            _ => None,
        }
    }

    /// A `TypeName` that certainly names one of PostgreSQL's own scalar types, as
    /// `format_type` writes it. Unqualified names count only when `pg_catalog` is searched
    /// first (a schema before it could hold a type of the same name; no guarded session can
    /// create a temporary one: every call is read-only and DDL is denied).
    pub(super) fn builtin_type(&self, id: Id) -> Option<&'static [&'static str]> {
        let t = self.tree;
        let body = match wrapper(t, id) {
            Some(("TypeName", body)) => body,
            _ => id,
        };
        if t.get_bool(body, "setof")
            || t.get_bool(body, "pct_type")
            || t.get(body, "arrayBounds")
                .is_some_and(|a| !t.members(a).is_empty())
        {
            return None;
        }
        let mut names: [Option<&str>; 3] = [None, None, None];
        let mut count = 0;
        for Member { id: el, .. } in t.members(t.get(body, "names")?) {
            if let Some(("String", s)) = wrapper(t, *el) {
                names = [names[1], names[2], t.get_str(s, "sval")];
                count += 1;
            }
        }
        match (count, names[1], names[2]) {
            (1, _, Some(_)) if self.opts.first_schema() == "pg_catalog" => {}
            (2, Some("pg_catalog"), Some(_)) => {}
            _ => return None,
        }
        BUILTIN_TYPES
            .iter()
            .find(|(name, _)| Some(*name) == names[2])
            .map(|(_, written)| written.as_slice())
    }

    /// A type named anywhere (`x::t`, `CAST(x AS t)`, `t 'literal'`, a column definition
    /// list): with the database's catalog, the functions a conversion to it can run — a
    /// `CREATE CAST … WITH FUNCTION` cast to it, a domain's `CHECK` that calls a function —
    /// are calls like any other (context `cast`, `cast` naming the type). Which cast runs
    /// depends on the source type, which the analysis does not know: every one counts.
    pub(super) fn type_name(&mut self, body: Id) {
        let (tree, opts) = (self.tree, self.opts);
        let Some(snap) = opts.snapshot() else {
            return;
        };
        let Some(list) = tree.get(body, "names") else {
            return;
        };
        // `[schema.]type`: the last two names, read in place (every type in every query
        // comes here).
        let mut names: [Option<&str>; 2] = [None, None];
        for Member { id: el, .. } in tree.members(list) {
            if let Some(("String", s)) = wrapper(tree, *el) {
                names = [names[1], tree.get_str(s, "sval")];
            }
        }
        let (schema, Some(name)) = (names[0], names[1]) else {
            return;
        };
        if snap.unwritten_casts().next().is_some() {
            self.named_types.push(name.to_string());
        }
        let path = opts.effective_path();
        for cast in snap.casts_to(schema, name, path) {
            let to = format!("{}.{}", cast.type_schema, cast.type_name);
            self.facts
                .functions
                .push(resolve::cast(snap, path, cast, to));
        }
    }

    /// Records an operator that is not certainly PostgreSQL's own: with the database's
    /// catalog, every one PostgreSQL could pick for these operands.
    pub(super) fn operator(&mut self, names: &[String], operands: Operands) {
        let (schema, name) = match names {
            [n] => (None, n.clone()),
            [.., s, n] => (Some(s.clone()), n.clone()),
            [] => return,
        };
        let Some(snap) = self.opts.snapshot() else {
            let builtin = schema.as_deref().is_none_or(|s| s == "pg_catalog")
                && catalog().has_operator(&name);
            if !builtin {
                self.facts.operators.push(Operator {
                    schema,
                    name,
                    builtin,
                    function: None,
                });
            }
            return;
        };
        // Unqualified operators were resolved once per snapshot: a lookup, and a copy only
        // the first time a statement uses the operator.
        let resolved;
        let resolution = match (&schema, self.opts.resolutions()) {
            (None, Some(r)) => r.operator(&name),
            _ => {
                resolved =
                    resolve::operator(snap, self.opts.effective_path(), schema.as_deref(), &name);
                Some(&resolved)
            }
        };
        match resolution {
            Some(r @ resolve::OperatorResolution::Other(_)) => {
                for op in r.candidates(&operands) {
                    if !self.facts.operators.iter().any(|o| o == op) {
                        self.facts.operators.push(op.clone());
                    }
                }
            }
            Some(resolve::OperatorResolution::Builtin) => {}
            Some(resolve::OperatorResolution::Missing) | None => {
                self.facts.operators.push(Operator {
                    schema,
                    name,
                    builtin: false,
                    function: None,
                })
            }
        }
    }
}
