//! What the database runs on its own, from its catalog snapshot: the definitions of the views
//! a statement reads (analyzed like a query, once per snapshot), `pg_stats` rows mapped to what
//! they sample, and the casts PostgreSQL applies without being asked.

use super::expressions::same_type;
use super::*;

thread_local! {
    /// The views whose definitions are being analyzed on this thread (a view read by a view
    /// whose definition is being analyzed): a cycle is refused, never waited on.
    static IN_PROGRESS: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The facts of view `schema.name`'s definition, analyzed once per snapshot.
pub(super) fn view_facts(
    opts: &AnalysisOptions,
    snap: &crate::analysis::snapshot::Snapshot,
    schema: &str,
    name: &str,
) -> Result<Arc<StatementFacts>, String> {
    let Some((i, cell)) = snap.view_facts_cell(schema, name) else {
        return Err("is not in the catalog".into());
    };
    if let Some(done) = cell.get() {
        return done.clone();
    }
    let cyclic = IN_PROGRESS.with(|p| {
        let p = p.borrow();
        p.contains(&i) || p.len() >= 32
    });
    if cyclic {
        return Err("reads itself through other views, or views nested over 32 deep".into());
    }
    IN_PROGRESS.with(|p| p.borrow_mut().push(i));
    let analyzed = match snap.relations[i].definition.as_deref() {
        None => Err("the catalog snapshot does not hold (read the catalog again)".into()),
        Some(sql) => match crate::analysis::analyze_with(sql, opts) {
            Ok(mut facts) if facts.statements.len() == 1 => {
                Ok(Arc::new(facts.statements.remove(0)))
            }
            Ok(_) => Err("is not one statement".into()),
            Err(e) => Err(format!("cannot be analyzed ({e})")),
        },
    };
    IN_PROGRESS.with(|p| p.borrow_mut().retain(|&x| x != i));
    // Kept whatever the path: a view that reaches a cycle, or nests too deep from here, is
    // refused however it is read.
    cell.get_or_init(|| analyzed).clone()
}

impl<'t, 'a> Walker<'t, 'a> {
    /// With the database's catalog, what the statement's relations bring along: the rows a
    /// statistics view can show, mapped to the relations and columns they sample, and each
    /// view's own definition, analyzed like a query (cached per view and snapshot), whose
    /// functions, operators, settings and constructs are the statement's own.
    pub(super) fn catalog_objects(&mut self) {
        let Some(snap) = self.opts.snapshot() else {
            return;
        };
        let mut views: Vec<(String, String)> = Vec::new();
        for r in &mut self.facts.relations {
            if r.cte || r.access == Access::Create {
                continue;
            }
            if r.builtin && r.stats_of.is_none() && r.qualified_name == "pg_catalog.pg_stats" {
                let pin = |column: &str| {
                    r.pinned
                        .iter()
                        .find(|p| p.column == column)
                        .map(|p| p.values.as_slice())
                };
                let stats = snap.stats_of(pin("schemaname"), pin("tablename"), pin("attname"));
                r.stats_of = Some(Box::new(stats));
            } else if !r.builtin && matches!(r.kind.as_deref(), Some("view" | "materialized_view"))
            {
                // PostgreSQL's own views (pg_settings, pg_stats, …) are judged by the
                // side-channel rules on what they show, not by the functions behind them.
                if let Some(schema) = &r.schema {
                    let key = (schema.clone(), r.name.clone());
                    if !views.contains(&key) {
                        views.push(key);
                    }
                }
            }
        }
        for (schema, name) in views {
            let qualified = crate::analysis::dotted(&schema, &name);
            match view_facts(self.opts, snap, &schema, &name) {
                Ok(v) => {
                    let f = &mut self.facts;
                    f.functions.extend(v.functions.iter().map(|c| FunctionCall {
                        view: Some(c.view.clone().unwrap_or_else(|| qualified.clone())),
                        ..c.clone()
                    }));
                    f.operators.extend(v.operators.iter().map(|o| Operator {
                        function: o.function.as_ref().map(|c| FunctionCall {
                            view: Some(c.view.clone().unwrap_or_else(|| qualified.clone())),
                            ..c.clone()
                        }),
                        ..o.clone()
                    }));
                    f.settings.extend(v.settings.iter().cloned());
                    f.not_read_only.extend(v.not_read_only.iter().cloned());
                    f.locking.extend(v.locking.iter().cloned());
                    f.unclassified.extend(
                        v.unclassified
                            .iter()
                            .map(|u| format!("{u} (in the definition of view {qualified})")),
                    );
                }
                Err(why) => self
                    .facts
                    .unclassified
                    .push(format!("the definition of view {qualified}, which {why}")),
            }
        }
    }

    /// Casts PostgreSQL applies by itself (`CREATE CAST … AS IMPLICIT` or `AS ASSIGNMENT`
    /// with a function not its own) run wherever a value of one type meets the other: in an
    /// operator's or a function's argument, a comparison, `CASE`, `UNION`, storing into a
    /// column. The analysis does not type every expression, so such a cast is a call of every
    /// statement where a value of its extension's or user's type may be: one that names the
    /// type, reads a column of it (by name, `*` or a whole row; through arrays too), or calls
    /// a function or an operator that is not PostgreSQL's own (whose types are not known). A
    /// cast between two built-in types (only a superuser can make one) counts everywhere, and
    /// an assignment cast only in a statement that writes.
    pub(super) fn unwritten_casts(&mut self) {
        let Some(snap) = self.opts.snapshot() else {
            return;
        };
        let mut casts = snap.unwritten_casts().peekable();
        if casts.peek().is_none() {
            return;
        }
        let writes = self
            .facts
            .relations
            .iter()
            .any(|r| r.access == Access::Write);
        let calls_unknown_types = self.facts.functions.iter().any(|f| !f.builtin)
            || self
                .facts
                .operators
                .iter()
                .any(|o| o.function.as_ref().is_some_and(|f| !f.builtin));
        let path = self.opts.effective_path();
        let mut counted = Vec::new();
        for (cast, context) in casts {
            let applied = match context {
                CastContext::Implicit => "implicitly",
                CastContext::Assignment if writes => "when storing into a column",
                CastContext::Assignment => continue,
            };
            let mut own = cast.own_types().peekable();
            let may_meet = own.peek().is_none()
                || calls_unknown_types
                || own.any(|t| self.holds_value_of(snap, t));
            if !may_meet {
                continue;
            }
            let target = cast
                .target
                .clone()
                .unwrap_or_else(|| format!("{}.{}", cast.type_schema, cast.type_name));
            let source = cast.source.as_deref().unwrap_or("any type");
            counted.push(resolve::cast(
                snap,
                path,
                cast,
                format!("{target} from {source}, which PostgreSQL applies {applied}"),
            ));
        }
        self.facts.functions.extend(counted);
    }

    /// May the statement hold a value of type `ty` (a `format_type` name): it names the type,
    /// or reads a column of it (or of an array of it) by name, `*` or a whole row.
    pub(super) fn holds_value_of(
        &self,
        snap: &crate::analysis::snapshot::Snapshot,
        ty: &str,
    ) -> bool {
        if self.named_types.iter().any(|n| same_type(n, ty)) {
            return true;
        }
        self.facts.columns.iter().any(|c| {
            c.relations.iter().any(|r| {
                let Some((schema, name)) = r.split_once('.') else {
                    return false;
                };
                let Some(def) = snap.relation(schema, name) else {
                    return false;
                };
                // Columns not listed: any may be of that type.
                let Some(columns) = &def.columns else {
                    return true;
                };
                columns
                    .iter()
                    .any(|(n, t)| (c.star || *n == c.name) && same_type(t, ty))
            })
        })
    }
}
