//! JSON-RPC framing in front of rmcp's stdio transport: every line a client sends is
//! answered. rmcp drops a line it cannot parse without a word (the client then waits for ever)
//! and answers some malformed requests with the wrong code, so each line is checked here first,
//! as JSON-RPC 2.0 says:
//!
//! | line | answer |
//! |---|---|
//! | not UTF-8, not JSON, nested past serde_json's limit | -32700 parse error, `id: null` |
//! | a batch, not an object, `jsonrpc` not "2.0", no method | -32600 invalid request (with the `id` when there is one) |
//! | `tools/call` whose params are not an object naming a tool | -32602 invalid params |
//! | longer than [`MAX_LINE`] | -32600, and the rest of the line is skipped unread |
//!
//! Lines that pass are handed to rmcp unchanged; its answers and these share stdout one whole
//! line at a time.

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::mpsc;

/// The longest line read (a query is at most `max_query_bytes`, 64 KiB by default).
pub const MAX_LINE: usize = 16 << 20;

/// The streams rmcp serves on, and the task that writes stdout (await it after rmcp ends, so
/// the last answers are flushed).
pub struct Framed {
    pub reader: DuplexStream,
    pub writer: DuplexStream,
    pub output: tokio::task::JoinHandle<()>,
}

/// Frames the process's stdin and stdout.
pub fn stdio() -> Framed {
    frame(tokio::io::stdin(), tokio::io::stdout())
}

/// Frames any pair of streams (tests use pipes).
pub fn frame<R, W>(input: R, output: W) -> Framed
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (rmcp_reader, to_rmcp) = tokio::io::duplex(1 << 20);
    let (rmcp_writer, from_rmcp) = tokio::io::duplex(1 << 20);
    let (lines, queue) = mpsc::channel::<Vec<u8>>(64);
    let output = tokio::spawn(write_lines(queue, output));
    tokio::spawn(forward_answers(from_rmcp, lines.clone()));
    tokio::spawn(check_requests(input, to_rmcp, lines));
    Framed {
        reader: rmcp_reader,
        writer: rmcp_writer,
        output,
    }
}

async fn write_lines<W: AsyncWrite + Unpin>(mut queue: mpsc::Receiver<Vec<u8>>, mut out: W) {
    while let Some(line) = queue.recv().await {
        if out.write_all(&line).await.is_err() || out.flush().await.is_err() {
            return;
        }
    }
}

async fn forward_answers(from_rmcp: DuplexStream, lines: mpsc::Sender<Vec<u8>>) {
    let mut reader = BufReader::new(from_rmcp);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if lines.send(line.clone()).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn check_requests<R: AsyncRead + Unpin>(
    input: R,
    mut to_rmcp: DuplexStream,
    lines: mpsc::Sender<Vec<u8>>,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let mut line = Vec::new();
    loop {
        line.clear();
        let too_long = match read_line(&mut reader, &mut line).await {
            Ok(None) => return, // end of input: rmcp sees it when to_rmcp is dropped
            Ok(Some(too_long)) => too_long,
            Err(e) => {
                tracing::warn!("cannot read stdin: {e}");
                return;
            }
        };
        let verdict = match too_long {
            Some(n) => Err(error(
                Value::Null,
                -32600,
                format!("the line is {n} bytes or more, longer than the {MAX_LINE} bytes sqlguard reads: it was skipped"),
            )),
            None => check(&line),
        };
        match verdict {
            Ok(true) => {
                line.push(b'\n');
                if to_rmcp.write_all(&line).await.is_err() {
                    return;
                }
            }
            Ok(false) => {} // a blank line
            Err(answer) => {
                tracing::warn!(
                    "refused a malformed JSON-RPC line: {}",
                    answer["error"]["message"]
                );
                let mut bytes = answer.to_string().into_bytes();
                bytes.push(b'\n');
                if lines.send(bytes).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads one line (without its `\n`) into `line`, keeping at most [`MAX_LINE`] bytes. Returns
/// `None` at end of input, `Some(Some(n))` when the line was longer (its rest is skipped).
async fn read_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<Option<usize>>> {
    let mut seen = 0usize;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok((seen > 0).then(|| (seen > MAX_LINE).then_some(seen)));
        }
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1),
            None => (chunk, chunk.len()),
        };
        let end = part.len();
        if seen + end <= MAX_LINE {
            line.extend_from_slice(part);
        } else {
            line.clear();
        }
        seen += end;
        let newline = done > end;
        reader.consume(done);
        if newline {
            return Ok(Some((seen > MAX_LINE).then_some(seen)));
        }
    }
}

/// `Ok(true)`: pass the line to rmcp; `Ok(false)`: blank, ignore; `Err(answer)`: send this.
fn check(line: &[u8]) -> Result<bool, Value> {
    let text = std::str::from_utf8(line).map_err(|e| {
        error(
            Value::Null,
            -32700,
            format!("parse error: the line is not UTF-8 ({e})"),
        )
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(false);
    }
    let message: Value = serde_json::from_str(text)
        .map_err(|e| error(Value::Null, -32700, format!("parse error: {e}")))?;
    let Value::Object(m) = &message else {
        let why = if message.is_array() {
            "batches are not part of MCP: send one request per line"
        } else {
            "a JSON-RPC message is an object"
        };
        return Err(error(
            Value::Null,
            -32600,
            format!("invalid request: {why}"),
        ));
    };
    let id = match m.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        _ => Value::Null,
    };
    let invalid = |why: &str| Err(error(id.clone(), -32600, format!("invalid request: {why}")));
    if m.get("jsonrpc") != Some(&json!("2.0")) {
        return invalid("\"jsonrpc\" must be \"2.0\"");
    }
    match m.get("method") {
        Some(Value::String(method)) => {
            if method == "tools/call" {
                let named = m
                    .get("params")
                    .and_then(Value::as_object)
                    .and_then(|p| p.get("name"))
                    .is_some_and(Value::is_string);
                if !named {
                    return Err(error(
                        id,
                        -32602,
                        "invalid params: tools/call needs params {\"name\": TOOL, \"arguments\": {…}}",
                    ));
                }
            }
            Ok(true)
        }
        Some(_) => invalid("\"method\" must be a string"),
        // A client's answer to a request of the server's.
        None if m.contains_key("result") || m.contains_key("error") => Ok(true),
        None => invalid("no \"method\""),
    }
}

fn error(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let code = |line: &[u8]| match check(line) {
            Ok(pass) => i64::from(pass),
            Err(e) => e["error"]["code"].as_i64().unwrap(),
        };
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), 1);
        assert_eq!(code(b"   "), 0);
        assert_eq!(code(b"{nope"), -32700);
        assert_eq!(code(b"{\"jsonrpc\":\"2.0\",\"x\":\"\xff\"}"), -32700);
        assert_eq!(code(br#"{"id":1,"method":"ping"}"#), -32600);
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#),
            -32602
        );
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#), 1);
    }
}
