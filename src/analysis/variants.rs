//! The same query with other constants: what an agent sends when it asks the same question
//! about another customer or another day. For the decision cache's differential tests and the
//! varied-constants benchmark; never on the decision path.

use pg_query::protobuf::Token;

/// A small deterministic generator (xorshift64*), so a seed names a stream.
#[derive(Debug, Clone)]
pub struct Constants(u64);

impl Constants {
    pub fn new(seed: u64) -> Constants {
        Constants(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn digits(&mut self, out: &mut String, max: u64) {
        let n = 1 + self.below(max);
        for i in 0..n {
            // No leading zero: `007` scans as one integer anyway, but stay ordinary.
            let d = if i == 0 {
                1 + self.below(9)
            } else {
                self.below(10)
            };
            out.push(char::from(b'0' + d as u8));
        }
    }

    /// `sql` with every integer, decimal and plain `'…'` string constant replaced by a fresh
    /// one of the same kind and a random length; `None` when the scanner rejects the text.
    /// Identifiers, keywords, operators and other constants (`E'…'`, `$$…$$`, bit strings) are
    /// kept.
    pub fn refresh(&mut self, sql: &str) -> Option<String> {
        // `pg_query::scan_tokens` (18.1) builds a slice from a null pointer when a text has no
        // tokens (undefined behaviour, found by the fuzzer on ""): take the protobuf route.
        let tokens = pg_query::scan(sql).ok()?.tokens;
        let mut out = String::with_capacity(sql.len() + 16);
        let mut at = 0;
        for t in tokens {
            let (start, end) = (t.start as usize, t.end as usize);
            let text = sql.get(start..end)?;
            let fresh = if t.token == Token::Iconst as i32 {
                let mut s = String::new();
                self.digits(&mut s, 7);
                s
            } else if t.token == Token::Fconst as i32 && !text.contains(['e', 'E']) {
                let mut s = String::new();
                self.digits(&mut s, 5);
                s.push('.');
                self.digits(&mut s, 3);
                s
            } else if t.token == Token::Sconst as i32
                && text.len() >= 2
                && text.starts_with('\'')
                && text.ends_with('\'')
            {
                let mut s = String::from("'");
                for _ in 0..1 + self.below(12) {
                    s.push(char::from(b'a' + self.below(26) as u8));
                }
                s.push('\'');
                s
            } else {
                continue;
            };
            out.push_str(sql.get(at..start)?);
            out.push_str(&fresh);
            at = end;
        }
        out.push_str(sql.get(at..)?);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_constants_change() {
        let sql = "SELECT a, 'x''y', 1.5, E'z' FROM t WHERE id = 42 AND name LIKE 'jo%' -- 7\n";
        let mut c = Constants::new(7);
        let a = c.refresh(sql).unwrap();
        let b = c.refresh(sql).unwrap();
        assert_ne!(a, b);
        for v in [&a, &b] {
            assert!(v.starts_with("SELECT a, '"), "{v}");
            assert!(v.contains(", E'z' FROM t WHERE id = "), "{v}");
            assert!(v.ends_with("' -- 7\n"), "{v}");
            assert!(!v.contains(" 42 ") && !v.contains("'jo%'"), "{v}");
            let facts = crate::analysis::analyze(v).unwrap();
            assert_eq!(facts.statements[0].relations[0].name, "t");
        }
        assert_eq!(Constants::new(7).refresh(sql), Some(a));
        for empty in ["", "  ", "-- only a comment"] {
            assert_eq!(Constants::new(1).refresh(empty).as_deref(), Some(empty));
        }
    }
}
