/*
 * sqlguard: libpg_query's raw parse tree as a compact event stream.
 *
 * libpg_query's JSON writer (pg_query_outfuncs_json.c) formats every node as text, which
 * sqlguard then reads back: about two thirds of the analysis. This file walks the same
 * tree with the same generated per-node code (pg_query_outfuncs_defs.c, which calls the
 * WRITE_* macros below) but writes typed events instead of text: begin/end of an object or
 * array, a key, a string, an integer, a boolean, null. Every field is written exactly when
 * the JSON writer writes it, so the arena built from these events (src/analysis/raw.rs) is
 * the one the JSON reader builds: tests/raw_tree.rs holds the two equal over the corpora,
 * and the analysis checks them equal on its own sample before trusting this path.
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

/* Event tags: keep in step with src/analysis/raw.rs. */
#define SG_OBJECT 1 /* u32 number of members (backpatched when the object ends) */
#define SG_ARRAY 2	/* u32 number of elements (backpatched when the array ends) */
#define SG_END 3
#define SG_KEY 4	/* u8 length, bytes (a field name: ASCII, at most 255 bytes) */
#define SG_STRING 5 /* u32 length, bytes */
#define SG_INT 6	/* i64 */
#define SG_TRUE 7
#define SG_FALSE 8
#define SG_NULL 9
#define SG_NUMBER 10 /* u32 length, the number's text (not an i64) */

/* An open container: where its count goes, and how many values it holds so far. */
typedef struct
{
	size_t		at;
	uint32_t	count;
} SgOpen;

typedef struct
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		oom;
	/* The open containers, innermost last: a value counts for the innermost one. */
	SgOpen	   *open;
	size_t		depth;
	size_t		open_cap;
} SgOut;

static bool
sg_grow(SgOut *o, size_t n)
{
	size_t		cap = o->cap ? o->cap : 4096;
	char	   *data;

	while (cap < o->len + n)
		cap *= 2;
	data = realloc(o->data, cap);
	if (data == NULL)
	{
		o->oom = true;
		return false;
	}
	o->data = data;
	o->cap = cap;
	return true;
}

static inline bool
sg_reserve(SgOut *o, size_t n)
{
	if (o->oom)
		return false;
	if (o->len + n > o->cap)
		return sg_grow(o, n);
	return true;
}

/* One more value in the innermost open container. */
static inline void
sg_counted(SgOut *o)
{
	if (o->depth > 0)
		o->open[o->depth - 1].count++;
}

/* A value without a payload: true, false, null. */
static inline void
sg_tag(SgOut *o, uint8_t tag)
{
	sg_counted(o);
	if (sg_reserve(o, 1))
		o->data[o->len++] = (char) tag;
}

/* The start of an object or array: a value of its container, and the container of what follows. */
static void
sg_open(SgOut *o, uint8_t tag)
{
	uint32_t	zero = 0;

	sg_counted(o);
	if (!sg_reserve(o, 1 + sizeof(zero)))
		return;
	if (o->depth == o->open_cap)
	{
		size_t		cap = o->open_cap ? o->open_cap * 2 : 64;
		SgOpen	   *open = realloc(o->open, cap * sizeof(SgOpen));

		if (open == NULL)
		{
			o->oom = true;
			return;
		}
		o->open = open;
		o->open_cap = cap;
	}
	o->data[o->len++] = (char) tag;
	o->open[o->depth].at = o->len;
	o->open[o->depth].count = 0;
	o->depth++;
	memcpy(o->data + o->len, &zero, sizeof(zero));
	o->len += sizeof(zero);
}

/* The end of the innermost container: its count is written where it started. */
static void
sg_close(SgOut *o)
{
	if (o->oom)
		return;
	if (o->depth == 0)
	{
		/* Unreachable: every close has its open. Fail closed: no events. */
		o->oom = true;
		return;
	}
	o->depth--;
	memcpy(o->data + o->open[o->depth].at, &o->open[o->depth].count, sizeof(uint32_t));
	if (sg_reserve(o, 1))
		o->data[o->len++] = (char) SG_END;
}

static void
sg_bytes(SgOut *o, uint8_t tag, const char *s, size_t n)
{
	uint32_t	len = (uint32_t) n;

	sg_counted(o);
	if (n > UINT32_MAX)
	{
		o->oom = true;
		return;
	}
	if (!sg_reserve(o, 1 + sizeof(len) + n))
		return;
	o->data[o->len++] = (char) tag;
	memcpy(o->data + o->len, &len, sizeof(len));
	o->len += sizeof(len);
	memcpy(o->data + o->len, s, n);
	o->len += n;
}

static void
sg_int(SgOut *o, int64_t v)
{
	sg_counted(o);
	if (!sg_reserve(o, 1 + sizeof(v)))
		return;
	o->data[o->len++] = (char) SG_INT;
	memcpy(o->data + o->len, &v, sizeof(v));
	o->len += sizeof(v);
}

/* A key: a string literal, its length known at compile time (so the copy is inlined). */
static inline __attribute__((always_inline)) void
sg_key(SgOut *o, const char *lit, size_t n)
{
	if (n > UINT8_MAX)
	{
		o->oom = true;
		return;
	}
	if (!sg_reserve(o, 2 + n))
		return;
	o->data[o->len++] = (char) SG_KEY;
	o->data[o->len++] = (char) (uint8_t) n;
	memcpy(o->data + o->len, lit, n);
	o->len += n;
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
	sg_open(out, SG_OBJECT);
	switch (nodeTag(obj))
	{
#include "pg_query_outfuncs_conds.c"

		default:
			/* The JSON writer warns and writes an empty object: so does this. */
			elog(WARNING, "could not dump unrecognized node type: %d", (int) nodeTag(obj));
			break;
	}
	sg_close(out);
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

typedef struct
{
	char	   *events;
	size_t		len;
	PgQueryError *error;
} SqlguardEvents;

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
 * and writes its tree as events.
 * The caller frees the result with sqlguard_free_events.
 */
SqlguardEvents
sqlguard_parse_events(const char *input)
{
	SqlguardEvents result = {0};
	/* On the heap: a local changed after PG_TRY's setjmp is indeterminate after its longjmp. */
	SgOut	   *out = calloc(1, sizeof(SgOut));
	MemoryContext ctx;

	if (out == NULL)
	{
		result.error = sg_error("out of memory");
		return result;
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
	if (result.error == NULL && out->depth != 0)
		result.error = sg_error("the parse tree's events were left unclosed");
	free(out->open);
	if (result.error != NULL)
		free(out->data);
	else
	{
		result.events = out->data;
		result.len = out->len;
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
sqlguard_free_events(SqlguardEvents result)
{
	free(result.events);
	sg_free_error(result.error);
}
