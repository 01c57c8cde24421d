/*
 * sqlguard: libpg_query's raw parse tree as a flat arena.
 *
 * libpg_query's JSON writer (pg_query_outfuncs_json.c) formats every node as text, which
 * sqlguard then read back: about two thirds of the analysis. This file walks the same
 * tree with the same generated per-node code (pg_query_outfuncs_defs.c, which calls the
 * WRITE_* macros below) but writes the document the JSON text holds straight into the
 * arena the analysis walks: an array of values in document order (an object, an array, a
 * string, an integer, a boolean, null) and an array of members (a key and a value's index),
 * each container's members contiguous. Every field is written exactly when the JSON writer
 * writes it, so the arena is the one the JSON reader builds: tests/raw_tree.rs holds the
 * two equal over the corpora, and the analysis checks them equal on its own sample before
 * trusting this path. src/analysis/raw.rs checks the arena's structure before reading it.
 *
 * Compiled by build.rs against the headers of the very libpg_query the `pg_query` crate
 * links (located through `cargo metadata`).
 */

#include "pg_query.h"
#include "pg_query_internal.h"

#include "postgres.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "access/relation.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "nodes/value.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "miscadmin.h"
#include "parser/parser.h"
#include "parser/scanner.h"
#include "gramparse.h"

/* Value tags: keep in step with src/analysis/raw.rs. */
#define SG_OBJECT 1 /* len members from members[val] (written when the object ends) */
#define SG_ARRAY 2	/* len elements from members[val] (written when the array ends) */
#define SG_STRING 5 /* len bytes from strings[val] */
#define SG_INT 6	/* val: the i64's bits */
#define SG_TRUE 7
#define SG_FALSE 8
#define SG_NULL 9
#define SG_NUMBER 10 /* len bytes from strings[val]: a number's text (not an i64) */

/* One value of the document. */
typedef struct
{
	uint32_t	tag;
	uint32_t	len;
	uint64_t	val;
} SgNode;

/* One member of a container: its key (a field name, a string literal of this file; "" in an
 * array) and its value's index. */
typedef struct
{
	const char *key;
	uint32_t	key_len;
	uint32_t	id;
} SgMember;

/* An open container: its value's index, and where its members start in `scratch`. */
typedef struct
{
	uint32_t	id;
	size_t		scratch_start;
} SgOpen;

typedef struct
{
	SgNode	   *nodes;
	size_t		n_nodes;
	size_t		nodes_cap;
	/* Members of closed containers, each container's contiguous. */
	SgMember   *members;
	size_t		n_members;
	size_t		members_cap;
	/* Members of the open containers, innermost last: moved to `members` when it closes. */
	SgMember   *scratch;
	size_t		n_scratch;
	size_t		scratch_cap;
	char	   *strings;
	size_t		strings_len;
	size_t		strings_cap;
	SgOpen	   *open;
	size_t		depth;
	size_t		open_cap;
	/* The key of the next value (set by sg_key; "" for an array's elements). */
	const char *key;
	uint32_t	key_len;
	/*
	 * A node's wrapper (`{"SelectStmt": {…}}`) whose one member is the next value: it is
	 * written in place, as the wrapper is never open (see _outNode).
	 */
	bool		wrapping;
	uint32_t	wrapper;
	bool		oom;
} SgOut;

/* Room for `n` more elements of `size` bytes in `*data` (holding `len` of `*cap`); at most
 * UINT32_MAX elements, so that every index fits a u32. */
static bool
sg_grow(SgOut *o, void **data, size_t *cap, size_t len, size_t n, size_t size)
{
	size_t		want = *cap ? *cap : 64;
	void	   *grown;

	if (o->oom)
		return false;
	while (want < len + n)
		want *= 2;
	if (len + n > UINT32_MAX || want > SIZE_MAX / size)
	{
		o->oom = true;
		return false;
	}
	grown = realloc(*data, want * size);
	if (grown == NULL)
	{
		o->oom = true;
		return false;
	}
	*data = grown;
	*cap = want;
	return true;
}

#define SG_ROOM(o, field, count, n) \
	(likely((o)->count + (n) <= (o)->field##_cap) || \
	 sg_grow((o), (void **) &(o)->field, &(o)->field##_cap, (o)->count, (n), sizeof(*(o)->field)))

/*
 * A value: the next index, a member of the innermost open container under the pending key.
 * After running out of memory, writes still stay within what was allocated, and the result
 * is discarded.
 */
static inline void
sg_node(SgOut *o, uint32_t tag, uint32_t len, uint64_t val)
{
	SgNode	   *node;
	SgMember   *member;

	if (!SG_ROOM(o, nodes, n_nodes, 1))
		return;
	node = &o->nodes[o->n_nodes];
	node->tag = tag;
	node->len = len;
	node->val = val;
	if (unlikely(o->wrapping))
	{
		/* A wrapper's body: the wrapper's one member, straight into `members`. */
		if (!SG_ROOM(o, members, n_members, 1))
			return;
		member = &o->members[o->n_members];
		member->key = o->key;
		member->key_len = o->key_len;
		member->id = (uint32_t) o->n_nodes;
		o->nodes[o->wrapper].len = 1;
		o->nodes[o->wrapper].val = o->n_members;
		o->n_members++;
		o->wrapping = false;
	}
	else if (likely(o->depth > 0))
	{
		if (!SG_ROOM(o, scratch, n_scratch, 1))
			return;
		member = &o->scratch[o->n_scratch++];
		member->key = o->key;
		member->key_len = o->key_len;
		member->id = (uint32_t) o->n_nodes;
	}
	o->n_nodes++;
	o->key = "";
	o->key_len = 0;
}

/* A value without a payload: true, false, null. */
static inline void
sg_tag(SgOut *o, uint8_t tag)
{
	sg_node(o, tag, 0, 0);
}

/* The start of an object or array: a value of its container, and the container of what follows. */
static void
sg_open(SgOut *o, uint8_t tag)
{
	uint32_t	id = (uint32_t) o->n_nodes;

	sg_node(o, tag, 0, 0);
	if (o->oom || !SG_ROOM(o, open, depth, 1))
		return;
	o->open[o->depth].id = id;
	o->open[o->depth].scratch_start = o->n_scratch;
	o->depth++;
}

/* The end of the innermost container: its members move from `scratch` to `members`. */
static void
sg_close(SgOut *o)
{
	SgOpen		top;
	size_t		n;
	SgMember   *to;
	const SgMember *from;

	if (o->oom)
		return;
	if (o->depth == 0)
	{
		/* Unreachable: every close has its open. Fail closed: no tree. */
		o->oom = true;
		return;
	}
	top = o->open[--o->depth];
	n = o->n_scratch - top.scratch_start;
	if (!SG_ROOM(o, members, n_members, n))
		return;
	/* Most containers hold a few members: a loop beats a call to memcpy. */
	to = o->members + o->n_members;
	from = o->scratch + top.scratch_start;
	for (size_t i = 0; i < n; i++)
		to[i] = from[i];
	o->nodes[top.id].len = (uint32_t) n;
	o->nodes[top.id].val = o->n_members;
	o->n_members += n;
	o->n_scratch = top.scratch_start;
	o->key = "";
	o->key_len = 0;
}

/* A string or a number's text: its bytes go to `strings`. */
static void
sg_bytes(SgOut *o, uint8_t tag, const char *s, size_t n)
{
	size_t		at = o->strings_len;

	if (o->oom)
		return;
	if (n > UINT32_MAX)
	{
		o->oom = true;
		return;
	}
	if (!SG_ROOM(o, strings, strings_len, n))
		return;
	memcpy(o->strings + at, s, n);
	o->strings_len += n;
	sg_node(o, tag, (uint32_t) n, at);
}

static void
sg_int(SgOut *o, int64_t v)
{
	sg_node(o, SG_INT, 0, (uint64_t) v);
}

/* A key: a string literal of this file, its length known at compile time. */
static inline __attribute__((always_inline)) void
sg_key(SgOut *o, const char *lit, size_t n)
{
	o->key = lit;
	o->key_len = (uint32_t) n;
}

#define SG_KEY_LIT(o, lit) sg_key((o), (lit), sizeof(lit) - 1)

/* The JSON writer's _outToken: a string, or null. */
static void
sg_token(SgOut *o, const char *s)
{
	if (s == NULL)
		sg_tag(o, SG_NULL);
	else
		sg_bytes(o, SG_STRING, s, strlen(s));
}

#define OUT_TYPE(typename, typename_c) SgOut *

#define OUT_NODE(typename, typename_c, typename_underscore, typename_underscore_upcase, typename_cast, fldname) \
  { \
	SG_KEY_LIT(out, CppAsString(typename)); \
	sg_open(out, SG_OBJECT); \
	_out##typename_c(out, (const typename_cast *) obj); \
	sg_close(out); \
  }

#define WRITE_INT_FIELD(msgtype, outname, outname_json, fldname) \
	if (node->fldname != 0) { \
		SG_KEY_LIT(out, CppAsString(outname_json)); \
		sg_int(out, (int64_t) node->fldname); \
	}

#define WRITE_UINT_FIELD(msgtype, outname, outname_json, fldname) \
	if (node->fldname != 0) { \
		SG_KEY_LIT(out, CppAsString(outname_json)); \
		sg_int(out, (int64_t) (uint32_t) node->fldname); \
	}

#define WRITE_UINT64_FIELD(msgtype, outname, outname_json, fldname) \
	if (node->fldname != 0) { \
		SG_KEY_LIT(out, CppAsString(outname_json)); \
		if ((uint64_t) node->fldname <= (uint64_t) INT64_MAX) \
			sg_int(out, (int64_t) node->fldname); \
		else { \
			char text[32]; \
			int n = snprintf(text, sizeof(text), UINT64_FORMAT, (uint64) node->fldname); \
			sg_bytes(out, SG_NUMBER, text, (size_t) n); \
		} \
	}

#define WRITE_LONG_FIELD(msgtype, outname, outname_json, fldname) \
	if (node->fldname != 0) { \
		SG_KEY_LIT(out, CppAsString(outname_json)); \
		sg_int(out, (int64_t) node->fldname); \
	}

#define WRITE_CHAR_FIELD(msgtype, outname, outname_json, fldname) \
	if (node->fldname != 0) { \
		char c = node->fldname; \
		SG_KEY_LIT(out, CppAsString(outname_json)); \
		sg_bytes(out, SG_STRING, &c, 1); \
	}

#define WRITE_ENUM_FIELD(msgtype, enumtype, outname, outname_json, fldname) \
	{ \
		const char *s = _enumToString##enumtype(node->fldname); \
		SG_KEY_LIT(out, CppAsString(outname_json)); \
		sg_token(out, s); \
	}

#define WRITE_FLOAT_FIELD(msgtype, outname, outname_json, fldname) \
	{ \
		char text[400]; \
		int n = snprintf(text, sizeof(text), "%f", node->fldname); \
		SG_KEY_LIT(out, CppAsString(outname_json)); \
		sg_bytes(out, SG_NUMBER, text, n < 0 ? 0 : ((size_t) n < sizeof(text) ? (size_t) n : sizeof(text) - 1)); \
	}

#define WRITE_BOOL_FIELD(msgtype, outname, outname_json, fldname) \
	if (node->fldname) { \
		SG_KEY_LIT(out, CppAsString(outname_json)); \
		sg_tag(out, SG_TRUE); \
	}

/* As the JSON writer: NULL and empty strings are omitted. */
#define WRITE_STRING_FIELD(msgtype, outname, outname_json, fldname) \
	if (node->fldname != NULL && node->fldname[0] != '\0') { \
		SG_KEY_LIT(out, CppAsString(outname_json)); \
		sg_token(out, node->fldname); \
	}

#define WRITE_LIST_FIELD(msgtype, outname, outname_json, fldname) \
	if (node->fldname != NULL) { \
		const ListCell *lc; \
		SG_KEY_LIT(out, CppAsString(outname_json)); \
		sg_open(out, SG_ARRAY); \
		foreach(lc, node->fldname) { \
			if (lfirst(lc) == NULL) { \
				sg_open(out, SG_OBJECT); \
				sg_close(out); \
			} else \
				_outNode(out, lfirst(lc)); \
		} \
		sg_close(out); \
	}

#define WRITE_NODE_FIELD(msgtype, outname, outname_json, fldname) \
	{ \
		SG_KEY_LIT(out, CppAsString(outname_json)); \
		_outNode(out, &node->fldname); \
	}

#define WRITE_NODE_PTR_FIELD(msgtype, outname, outname_json, fldname) \
	if (node->fldname != NULL) { \
		SG_KEY_LIT(out, CppAsString(outname_json)); \
		_outNode(out, node->fldname); \
	}

#define WRITE_SPECIFIC_NODE_FIELD(msgtype, typename, typename_underscore, outname, outname_json, fldname) \
	{ \
		SG_KEY_LIT(out, CppAsString(outname_json)); \
		sg_open(out, SG_OBJECT); \
		_out##typename(out, &node->fldname); \
		sg_close(out); \
	}

/* Recurses without _outNode (a long UNION chain): check the stack here, as libpg_query does. */
#define WRITE_SPECIFIC_NODE_PTR_FIELD(msgtype, typename, typename_underscore, outname, outname_json, fldname) \
	if (node->fldname != NULL) { \
		check_stack_depth(); \
		SG_KEY_LIT(out, CppAsString(outname_json)); \
		sg_open(out, SG_OBJECT); \
		_out##typename(out, node->fldname); \
		sg_close(out); \
	}

#define WRITE_BITMAPSET_FIELD(msgtype, outname, outname_json, fldname) \
	if (!bms_is_empty(node->fldname)) { \
		int x = 0; \
		SG_KEY_LIT(out, CppAsString(outname_json)); \
		sg_open(out, SG_ARRAY); \
		while ((x = bms_next_member(node->fldname, x)) >= 0) \
			sg_int(out, x); \
		sg_close(out); \
	}

static void _outNode(SgOut *out, const void *obj);

static void
_outList(SgOut *out, const List *node)
{
	const ListCell *lc;

	SG_KEY_LIT(out, "items");
	sg_open(out, SG_ARRAY);
	foreach(lc, node)
	{
		if (lfirst(lc) == NULL)
		{
			sg_open(out, SG_OBJECT);
			sg_close(out);
		}
		else
			_outNode(out, lfirst(lc));
	}
	sg_close(out);
}

static void
_outIntList(SgOut *out, const List *node)
{
	const ListCell *lc;

	SG_KEY_LIT(out, "items");
	sg_open(out, SG_ARRAY);
	foreach(lc, node)
		sg_int(out, lfirst_int(lc));
	sg_close(out);
}

static void
_outOidList(SgOut *out, const List *node)
{
	const ListCell *lc;

	SG_KEY_LIT(out, "items");
	sg_open(out, SG_ARRAY);
	foreach(lc, node)
		sg_int(out, (int64_t) lfirst_oid(lc));
	sg_close(out);
}

static void
_outInteger(SgOut *out, const Integer *node)
{
	if (node->ival != 0)
	{
		SG_KEY_LIT(out, "ival");
		sg_int(out, node->ival);
	}
}

static void
_outBoolean(SgOut *out, const Boolean *node)
{
	SG_KEY_LIT(out, "boolval");
	sg_tag(out, node->boolval ? SG_TRUE : SG_FALSE);
}

static void
_outFloat(SgOut *out, const Float *node)
{
	SG_KEY_LIT(out, "fval");
	sg_token(out, node->fval);
}

static void
_outString(SgOut *out, const String *node)
{
	SG_KEY_LIT(out, "sval");
	sg_token(out, node->sval);
}

static void
_outBitString(SgOut *out, const BitString *node)
{
	SG_KEY_LIT(out, "bsval");
	sg_token(out, node->bsval);
}

static void
_outAConst(SgOut *out, const A_Const *node)
{
	if (node->isnull)
	{
		SG_KEY_LIT(out, "isnull");
		sg_tag(out, SG_TRUE);
	}
	else
	{
		switch (node->val.node.type)
		{
			case T_Integer:
				SG_KEY_LIT(out, "ival");
				sg_open(out, SG_OBJECT);
				_outInteger(out, &node->val.ival);
				sg_close(out);
				break;
			case T_Float:
				SG_KEY_LIT(out, "fval");
				sg_open(out, SG_OBJECT);
				_outFloat(out, &node->val.fval);
				sg_close(out);
				break;
			case T_Boolean:
				SG_KEY_LIT(out, "boolval");
				sg_open(out, SG_OBJECT);
				if (node->val.boolval.boolval)
				{
					SG_KEY_LIT(out, "boolval");
					sg_tag(out, SG_TRUE);
				}
				sg_close(out);
				break;
			case T_String:
				SG_KEY_LIT(out, "sval");
				sg_open(out, SG_OBJECT);
				_outString(out, &node->val.sval);
				sg_close(out);
				break;
			case T_BitString:
				SG_KEY_LIT(out, "bsval");
				sg_open(out, SG_OBJECT);
				_outBitString(out, &node->val.bsval);
				sg_close(out);
				break;
			default:
				/* Unreachable: the JSON writer asserts. Fail closed: no value. */
				elog(ERROR, "A_Const holds an unexpected node type %d", (int) node->val.node.type);
		}
	}
	SG_KEY_LIT(out, "location");
	sg_int(out, node->location);
}

#include "pg_query_enum_defs.c"
#include "pg_query_outfuncs_defs.c"

static void
_outNode(SgOut *out, const void *obj)
{
	check_stack_depth();

	if (obj == NULL)
	{
		sg_tag(out, SG_NULL);
		return;
	}

	/*
	 * The wrapper `{"Type": body}`: an object with one member, the body that OUT_NODE opens
	 * next. It is not opened and closed as other containers are: its member is written in
	 * place when the body starts (sg_node), so that the most common container costs no
	 * stack entry and no copy.
	 */
	out->wrapper = (uint32_t) out->n_nodes;
	sg_node(out, SG_OBJECT, 0, out->n_members);
	out->wrapping = !out->oom;
	switch (nodeTag(obj))
	{
#include "pg_query_outfuncs_conds.c"

		default:
			/* The JSON writer warns and writes an empty object: so does this. */
			elog(WARNING, "could not dump unrecognized node type: %d", (int) nodeTag(obj));
			break;
	}
	/* An unknown type wrote no body: the wrapper stays empty. */
	out->wrapping = false;
}

static void
sg_stmts(SgOut *out, const List *stmts)
{
	const ListCell *lc;

	sg_open(out, SG_OBJECT);
	SG_KEY_LIT(out, "version");
	sg_int(out, PG_VERSION_NUM);
	SG_KEY_LIT(out, "stmts");
	sg_open(out, SG_ARRAY);
	foreach(lc, stmts)
	{
		sg_open(out, SG_OBJECT);
		_outRawStmt(out, lfirst(lc));
		sg_close(out);
	}
	sg_close(out);
	sg_close(out);
}

/* A parse's arena (or its error): freed with sqlguard_free_tree. */
typedef struct
{
	SgNode	   *nodes;
	size_t		n_nodes;
	SgMember   *members;
	size_t		n_members;
	char	   *strings;
	size_t		strings_len;
	PgQueryError *error;
} SqlguardTree;

static PgQueryError *
sg_error(const char *message)
{
	PgQueryError *error = calloc(1, sizeof(PgQueryError));

	if (error != NULL)
		error->message = strdup(message);
	return error;
}

/*
 * The settings pg_query_parse_opts(input, 0) parses with, set on this thread before every
 * parse or scan: standard_conforming_strings on (the value sqlguard pins on every
 * connection). Warnings (`GLOBAL is deprecated …`) are below log_min_messages, so the
 * parser does not format them: libpg_query, built with DEBUG, keeps them nowhere anyway.
 */
static void
sg_parser_settings(void)
{
	backslash_quote = BACKSLASH_QUOTE_SAFE_ENCODING;
	standard_conforming_strings = true;
	escape_string_warning = true;
	log_min_messages = ERROR;
}

/* The caught error, copied out of the memory context (malloc'd, freed by the caller). */
static PgQueryError *
sg_caught(MemoryContext ctx)
{
	ErrorData  *error_data;
	PgQueryError *error;

	MemoryContextSwitchTo(ctx);
	error_data = CopyErrorData();
	error = malloc(sizeof(PgQueryError));
	if (error != NULL)
	{
		error->message = strdup(error_data->message);
		error->filename = strdup(error_data->filename);
		error->funcname = strdup(error_data->funcname);
		error->context = NULL;
		error->lineno = error_data->lineno;
		error->cursorpos = error_data->cursorpos;
	}
	FlushErrorState();
	return error != NULL ? error : sg_error("out of memory");
}

/*
 * Parses `input` as pg_query_parse_opts(input, 0) does (raw_parser with the same settings),
 * and writes its tree into an arena.
 * The caller frees the result with sqlguard_free_tree.
 */
SqlguardTree
sqlguard_parse_tree(const char *input)
{
	SqlguardTree result = {0};
	/* On the heap: a local changed after PG_TRY's setjmp is indeterminate after its longjmp. */
	SgOut	   *out = calloc(1, sizeof(SgOut));
	MemoryContext ctx;

	if (out == NULL)
	{
		result.error = sg_error("out of memory");
		return result;
	}
	out->key = "";
	/*
	 * A parse tree holds about one value per byte of text: room for that up front saves the
	 * arrays' growth on ordinary statements (bounded, so a large text costs no more than it
	 * uses).
	 */
	{
		size_t		guess = strlen(input) + 64;

		if (guess > 65536)
			guess = 65536;
		if (!SG_ROOM(out, nodes, n_nodes, guess) || !SG_ROOM(out, members, n_members, guess) ||
			!SG_ROOM(out, scratch, n_scratch, guess) ||
			!SG_ROOM(out, strings, strings_len, guess) || !SG_ROOM(out, open, depth, 64))
			out->oom = true;
	}
	ctx = pg_query_enter_memory_context();

	PG_TRY();
	{
		List	   *tree;

		sg_parser_settings();
		tree = raw_parser(input, RAW_PARSE_DEFAULT);
		sg_stmts(out, tree);
	}
	PG_CATCH();
	{
		result.error = sg_caught(ctx);
	}
	PG_END_TRY();

	pg_query_exit_memory_context(ctx);

	if (result.error == NULL && out->oom)
		result.error = sg_error("out of memory while writing the parse tree");
	if (result.error == NULL && (out->depth != 0 || out->n_scratch != 0))
		result.error = sg_error("the parse tree's containers were left unclosed");
	free(out->open);
	free(out->scratch);
	if (result.error != NULL)
	{
		free(out->nodes);
		free(out->members);
		free(out->strings);
	}
	else
	{
		result.nodes = out->nodes;
		result.n_nodes = out->n_nodes;
		result.members = out->members;
		result.n_members = out->n_members;
		result.strings = out->strings;
		result.strings_len = out->strings_len;
	}
	free(out);
	return result;
}

/* One token of PostgreSQL's scanner: its grammar symbol and its bytes in the text. */
typedef struct
{
	int32_t		token;
	int32_t		start;
	int32_t		end;
} SgToken;

typedef struct
{
	SgToken    *tokens;
	size_t		len;
	PgQueryError *error;
} SqlguardTokens;

typedef struct
{
	SgToken    *data;
	size_t		len;
	size_t		cap;
	bool		oom;
} SgTokens;

/*
 * The start of flex's private scanner state, to read yyleng: the same device as
 * libpg_query's pg_query_scan.c (same flex output).
 */
struct sg_yyguts
{
	void	   *yyextra_r;
	FILE	   *yyin_r,
			   *yyout_r;
	size_t		yy_buffer_stack_top;
	size_t		yy_buffer_stack_max;
	struct yy_buffer_state *yy_buffer_stack;
	char		yy_hold_char;
	size_t		yy_n_chars;
	size_t		yyleng_r;
};

/*
 * The tokens of `input` as the parser's scanner reads them (comments and whitespace are
 * not tokens), with the parser's settings. A text the scanner rejects (an unterminated
 * string, an escape that is not UTF-8, …) is an error. Freed with sqlguard_free_tokens.
 */
SqlguardTokens
sqlguard_scan(const char *input)
{
	SqlguardTokens result = {0};
	SgTokens   *out = calloc(1, sizeof(SgTokens));
	MemoryContext ctx;

	if (out == NULL)
	{
		result.error = sg_error("out of memory");
		return result;
	}
	ctx = pg_query_enter_memory_context();

	PG_TRY();
	{
		core_yyscan_t yyscanner;
		core_yy_extra_type yyextra;
		core_YYSTYPE yylval;
		YYLTYPE		yylloc;

		sg_parser_settings();
		yyscanner = scanner_init(input, &yyextra, &ScanKeywords, ScanKeywordTokens);
		for (;;)
		{
			int			tok = core_yylex(&yylval, &yylloc, yyscanner);
			SgToken    *t;

			if (tok == 0)
				break;
			if (out->len == out->cap)
			{
				size_t		cap = out->cap ? out->cap * 2 : 64;
				SgToken    *grown = realloc(out->data, cap * sizeof(SgToken));

				if (grown == NULL)
				{
					out->oom = true;
					break;
				}
				out->data = grown;
				out->cap = cap;
			}
			t = &out->data[out->len++];
			t->token = tok;
			t->start = yylloc;
			if (tok == SCONST || tok == USCONST || tok == BCONST || tok == XCONST ||
				tok == IDENT || tok == UIDENT)
				t->end = yyextra.yyllocend;
			else
				t->end = yylloc + (int32_t) ((struct sg_yyguts *) yyscanner)->yyleng_r;
		}
		scanner_finish(yyscanner);
	}
	PG_CATCH();
	{
		result.error = sg_caught(ctx);
	}
	PG_END_TRY();

	pg_query_exit_memory_context(ctx);

	if (result.error == NULL && out->oom)
		result.error = sg_error("out of memory while scanning");
	if (result.error != NULL)
		free(out->data);
	else
	{
		result.tokens = out->data;
		result.len = out->len;
	}
	free(out);
	return result;
}

static void
sg_free_error(PgQueryError *error)
{
	if (error != NULL)
	{
		free(error->message);
		free(error->funcname);
		free(error->filename);
		free(error->context);
		free(error);
	}
}

void
sqlguard_free_tokens(SqlguardTokens result)
{
	free(result.tokens);
	sg_free_error(result.error);
}

/* The grammar symbols sqlguard's shape key treats specially (gram.h's numbers). */
void
sqlguard_token_kinds(int32_t *out)
{
	out[0] = SCONST;
	out[1] = ICONST;
	out[2] = FCONST;
	out[3] = BCONST;
	out[4] = XCONST;
	out[5] = USCONST;
	out[6] = UIDENT;
	out[7] = IDENT;
	out[8] = PARAM;
	out[9] = ';';
}

void
sqlguard_free_tree(SqlguardTree result)
{
	free(result.nodes);
	free(result.members);
	free(result.strings);
	sg_free_error(result.error);
}
