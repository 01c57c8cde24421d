//! Which parse nodes are statements (and of what kind), and which are known containers.
//!
//! Anything in neither list is reported in `unclassified`, which the default policy denies:
//! a node type this file has not been taught about can never pass silently.

use super::facts::StatementKind;

/// The normalized kind of a statement node, or `None` when `node` is not a statement.
pub fn statement_kind(node: &str) -> Option<StatementKind> {
    use StatementKind::*;
    Some(match node {
        "SelectStmt" => Select,
        "InsertStmt" => Insert,
        "UpdateStmt" => Update,
        "DeleteStmt" => Delete,
        "MergeStmt" => Merge,
        "ExplainStmt" => Explain,
        "VariableShowStmt" => Show,
        "VariableSetStmt" => Set,
        "DiscardStmt" => Discard,
        "TransactionStmt" => Transaction,
        "CopyStmt" => Copy,
        "PrepareStmt" => Prepare,
        "ExecuteStmt" => Execute,
        "DeallocateStmt" => Deallocate,
        "DeclareCursorStmt" | "FetchStmt" | "ClosePortalStmt" => Cursor,
        "NotifyStmt" => Notify,
        "ListenStmt" | "UnlistenStmt" => Listen,
        "LockStmt" => Lock,
        "VacuumStmt" | "ClusterStmt" | "ReindexStmt" | "CheckPointStmt" | "RefreshMatViewStmt" => {
            Maintenance
        }
        "DoStmt" => Do,
        "CallStmt" => Call,
        "LoadStmt" => Load,
        _ => return administrative_kind(node),
    })
}

/// The kinds of the statements that manage privileges (DCL), settings of the server, and
/// objects (DDL).
fn administrative_kind(node: &str) -> Option<StatementKind> {
    use StatementKind::*;
    Some(match node {
        "GrantStmt"
        | "GrantRoleStmt"
        | "AlterDefaultPrivilegesStmt"
        | "CreateRoleStmt"
        | "AlterRoleStmt"
        | "AlterRoleSetStmt"
        | "DropRoleStmt"
        | "DropOwnedStmt"
        | "ReassignOwnedStmt"
        | "CreateUserMappingStmt"
        | "AlterUserMappingStmt"
        | "DropUserMappingStmt"
        | "CreatePolicyStmt"
        | "AlterPolicyStmt" => Dcl,
        "ConstraintsSetStmt" | "AlterSystemStmt" | "AlterDatabaseSetStmt" => Utility,
        _ => return ddl_kind(node),
    })
}

/// The kind of a statement that defines, changes or drops an object (DDL).
fn ddl_kind(node: &str) -> Option<StatementKind> {
    use StatementKind::*;
    Some(match node {
        "CreateStmt"
        | "CreateTableAsStmt"
        | "ViewStmt"
        | "IndexStmt"
        | "AlterTableStmt"
        | "DropStmt"
        | "TruncateStmt"
        | "RenameStmt"
        | "CommentStmt"
        | "SecLabelStmt"
        | "CreateSchemaStmt"
        | "CreateSeqStmt"
        | "AlterSeqStmt"
        | "CreateFunctionStmt"
        | "AlterFunctionStmt"
        | "CreateTrigStmt"
        | "CreateEventTrigStmt"
        | "AlterEventTrigStmt"
        | "RuleStmt"
        | "DefineStmt"
        | "CreateDomainStmt"
        | "AlterDomainStmt"
        | "CompositeTypeStmt"
        | "CreateEnumStmt"
        | "AlterEnumStmt"
        | "CreateRangeStmt"
        | "AlterTypeStmt"
        | "CreateExtensionStmt"
        | "AlterExtensionStmt"
        | "AlterExtensionContentsStmt"
        | "CreateFdwStmt"
        | "AlterFdwStmt"
        | "CreateForeignServerStmt"
        | "AlterForeignServerStmt"
        | "CreateForeignTableStmt"
        | "ImportForeignSchemaStmt"
        | "CreateAmStmt"
        | "CreatePLangStmt"
        | "CreateOpClassStmt"
        | "CreateOpFamilyStmt"
        | "AlterOpFamilyStmt"
        | "AlterOperatorStmt"
        | "CreateCastStmt"
        | "CreateTransformStmt"
        | "CreateConversionStmt"
        | "AlterCollationStmt"
        | "CreateStatsStmt"
        | "AlterStatsStmt"
        | "AlterObjectDependsStmt"
        | "AlterObjectSchemaStmt"
        | "AlterOwnerStmt"
        | "AlterTSDictionaryStmt"
        | "AlterTSConfigurationStmt"
        | "CreatePublicationStmt"
        | "AlterPublicationStmt"
        | "CreateSubscriptionStmt"
        | "AlterSubscriptionStmt"
        | "DropSubscriptionStmt"
        | "CreatedbStmt"
        | "AlterDatabaseStmt"
        | "AlterDatabaseRefreshCollStmt"
        | "DropdbStmt"
        | "CreateTableSpaceStmt"
        | "DropTableSpaceStmt"
        | "AlterTableSpaceOptionsStmt"
        | "AlterTableMoveAllStmt"
        | "ReplicaIdentityStmt"
        | "ReturnStmt" => Ddl,
        _ => return None,
    })
}

/// The `not_read_only` construct a statement of this kind is, on its own.
pub fn kind_construct(kind: StatementKind) -> Option<&'static str> {
    use StatementKind::*;
    Some(match kind {
        Select | Explain | Show => return None,
        Insert | Update | Delete | Merge => "data_modifying_statement",
        Set | Reset | Discard => "session_change",
        Transaction => "transaction_control",
        Copy => "copy",
        Ddl => "ddl",
        Dcl => "dcl",
        Prepare | Execute | Deallocate => "prepared_statement",
        Cursor => "cursor",
        Notify | Listen => "notification",
        Lock => "table_lock",
        Maintenance => "maintenance",
        Do | Call => "procedural_code",
        Load => "load_library",
        Utility => "utility",
    })
}

/// Raw-parse-tree nodes that are plain containers: walking all their fields is the complete
/// treatment. (Nodes with their own meaning are handled in `walk.rs` before this list.)
pub fn is_container(node: &str) -> bool {
    is_query_container(node) || is_definition_container(node)
}

/// Containers of queries and expressions.
fn is_query_container(node: &str) -> bool {
    matches!(
        node,
        "Alias"
            | "IntoClause"
            | "GroupingFunc"
            | "SubLink"
            | "BoolExpr"
            | "CaseExpr"
            | "CaseWhen"
            | "RowExpr"
            | "CoalesceExpr"
            | "MinMaxExpr"
            | "SQLValueFunction"
            | "XmlExpr"
            | "XmlSerialize"
            | "NullTest"
            | "BooleanTest"
            | "SetToDefault"
            | "CurrentOfExpr"
            | "NamedArgExpr"
            | "JoinExpr"
            | "CollateClause"
            | "TypeName"
            | "ParamRef"
            | "TypeCast"
            | "RoleSpec"
            | "A_Star"
            | "A_Indices"
            | "A_Indirection"
            | "A_ArrayExpr"
            | "ResTarget"
            | "MultiAssignRef"
            | "SortBy"
            | "WindowDef"
            | "RangeSubselect"
            | "RangeFunction"
            | "RangeTableFunc"
            | "RangeTableFuncCol"
            | "ColumnDef"
            | "TableLikeClause"
            | "IndexElem"
            | "DefElem"
            | "PartitionElem"
            | "PartitionSpec"
            | "PartitionBoundSpec"
            | "PartitionRangeDatum"
            | "PartitionCmd"
            | "GroupingSet"
            | "CTESearchClause"
            | "CTECycleClause"
            | "InferClause"
            | "OnConflictClause"
            | "MergeWhenClause"
            | "ReturningClause"
            | "ReturningOption"
            | "TriggerTransition"
            | "JsonFormat"
            | "JsonReturning"
            | "JsonValueExpr"
            | "JsonBehavior"
            | "JsonIsPredicate"
            | "JsonOutput"
            | "JsonArgument"
            | "JsonFuncExpr"
            | "JsonTablePathSpec"
            | "JsonTable"
            | "JsonTableColumn"
            | "JsonKeyValue"
            | "JsonParseExpr"
            | "JsonScalarExpr"
            | "JsonSerializeExpr"
            | "JsonObjectConstructor"
            | "JsonArrayConstructor"
            | "JsonArrayQueryConstructor"
            | "JsonAggConstructor"
            | "JsonObjectAgg"
            | "JsonArrayAgg"
    )
}

/// Containers of definitions (constraints, privileges, DDL clauses) and plain values.
fn is_definition_container(node: &str) -> bool {
    matches!(
        node,
        "Constraint"
            | "AccessPriv"
            | "ObjectWithArgs"
            | "FunctionParameter"
            | "StatsElem"
            | "VacuumRelation"
            | "PublicationObjSpec"
            | "PublicationTable"
            | "CreateOpClassItem"
            | "AlterTableCmd"
            | "ATAlterConstraint"
            | "Integer"
            | "Float"
            | "Boolean"
            | "String"
            | "BitString"
            | "List"
            | "IntList"
            | "OidList"
    )
}

/// Nodes with their own handling in `walk.rs`.
#[cfg(test)]
pub const SPECIAL: &[&str] = &[
    "RangeVar",
    "FuncCall",
    "RangeTableSample",
    "A_Expr",
    "ColumnRef",
    "ParamRef",
    "A_Const",
    "CommonTableExpr",
    "WithClause",
    "LockingClause",
    "IntoClause",
];

/// Nodes only the planner builds: they never occur in a raw parse tree, so meeting one is
/// reported as unclassified.
#[cfg(test)]
pub const PLANNER_ONLY: &[&str] = &[
    "Var",
    "Param",
    "Aggref",
    "WindowFunc",
    "WindowFuncRunCondition",
    "MergeSupportFunc",
    "SubscriptingRef",
    "FuncExpr",
    "OpExpr",
    "DistinctExpr",
    "NullIfExpr",
    "ScalarArrayOpExpr",
    "SubPlan",
    "AlternativeSubPlan",
    "FieldSelect",
    "FieldStore",
    "RelabelType",
    "CoerceViaIO",
    "ArrayCoerceExpr",
    "ConvertRowtypeExpr",
    "CollateExpr",
    "CaseTestExpr",
    "ArrayExpr",
    "RowCompareExpr",
    "JsonConstructorExpr",
    "JsonExpr",
    "JsonTablePath",
    "JsonTablePathScan",
    "JsonTableSiblingJoin",
    "MergeAction",
    "CoerceToDomain",
    "CoerceToDomainValue",
    "NextValueExpr",
    "InferenceElem",
    "ReturningExpr",
    "TargetEntry",
    "RangeTblRef",
    "FromExpr",
    "OnConflictExpr",
    "Query",
    "TableFunc",
    "RangeTblEntry",
    "RTEPermissionInfo",
    "RangeTblFunction",
    "TableSampleClause",
    "WithCheckOption",
    "SortGroupClause",
    "WindowClause",
    "RowMarkClause",
    "PLAssignStmt",
    "InlineCodeBlock",
    "CallContext",
    "RawStmt",
    "SetOperationStmt",
];

#[cfg(test)]
mod tests {
    use super::super::node_schema::NODE_TYPES;
    use super::*;

    /// A pg_query upgrade that adds a node type fails here until the type is classified.
    #[test]
    fn every_node_type_is_classified() {
        let unknown: Vec<&&str> = NODE_TYPES
            .iter()
            .filter(|t| {
                statement_kind(t).is_none()
                    && !is_container(t)
                    && !SPECIAL.contains(t)
                    && !PLANNER_ONLY.contains(t)
            })
            .collect();
        assert!(unknown.is_empty(), "unclassified node types: {unknown:?}");
    }
}
