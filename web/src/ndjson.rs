//! Splitting a streamed NDJSON response into lines as its chunks arrive.
//!
//! The browser's `ReadableStream` hands over chunks of bytes cut anywhere: inside a line, inside
//! a multi-byte UTF-8 character, between a `\r` and its `\n`. [`LineSplitter`] keeps the bytes of
//! the unfinished line and returns each complete line once, so the app can parse every
//! `JobEvent` as soon as its last byte has arrived.

/// Collects chunks of bytes and returns the complete lines among them.
#[derive(Debug, Default)]
pub struct LineSplitter {
    /// The bytes after the last line break seen so far.
    pending: Vec<u8>,
}

impl LineSplitter {
    /// An empty splitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `chunk` and returns the lines it completes, without their `\n` or `\r\n`; blank lines
    /// are skipped. Bytes that are not UTF-8 are replaced (the JSON parser then reports the line).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.pending.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            if let Some(line) = take_line(&mut self.pending) {
                lines.push(line);
            }
        }
        self.pending.extend_from_slice(rest);
        lines
    }

    /// The last line when the stream ends without a final line break, if it holds anything.
    pub fn finish(&mut self) -> Option<String> {
        take_line(&mut self.pending)
    }
}

/// Empties `bytes` and returns them as a line without a trailing `\r`, or `None` when blank.
fn take_line(bytes: &mut Vec<u8>) -> Option<String> {
    let line = String::from_utf8_lossy(bytes)
        .trim_end_matches('\r')
        .to_owned();
    bytes.clear();
    (!line.trim().is_empty()).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_in_one_chunk() {
        let mut s = LineSplitter::new();
        assert_eq!(
            s.push(b"{\"a\":1}\n{\"b\":2}\n"),
            ["{\"a\":1}", "{\"b\":2}"]
        );
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn a_line_cut_across_chunks_comes_out_once_complete() {
        let mut s = LineSplitter::new();
        assert!(s.push(b"{\"event\":\"sta").is_empty());
        assert!(s.push(b"rted\"}").is_empty());
        assert_eq!(s.push(b"\n{\"x\""), ["{\"event\":\"started\"}"]);
        assert_eq!(s.finish().as_deref(), Some("{\"x\""));
    }

    #[test]
    fn a_utf8_character_cut_between_chunks_survives() {
        let text = "{\"message\":\"10 µm\"}\n".as_bytes();
        let cut = text.iter().position(|&b| b == 0xc2).unwrap() + 1;
        let mut s = LineSplitter::new();
        assert!(s.push(&text[..cut]).is_empty());
        assert_eq!(s.push(&text[cut..]), ["{\"message\":\"10 µm\"}"]);
    }

    #[test]
    fn crlf_and_blank_lines() {
        let mut s = LineSplitter::new();
        assert_eq!(s.push(b"a\r"), Vec::<String>::new());
        assert_eq!(s.push(b"\n\n\r\nb\n"), ["a", "b"]);
    }

    #[test]
    fn any_chunking_gives_the_same_lines() {
        let text =
            b"{\"event\":\"started\"}\n{\"event\":\"tile\",\"done\":1}\n\n{\"event\":\"done\"}";
        let whole = {
            let mut s = LineSplitter::new();
            let mut lines = s.push(text);
            lines.extend(s.finish());
            lines
        };
        assert_eq!(whole.len(), 3);
        for size in 1..text.len() {
            let mut s = LineSplitter::new();
            let mut lines = Vec::new();
            for chunk in text.chunks(size) {
                lines.extend(s.push(chunk));
            }
            lines.extend(s.finish());
            assert_eq!(lines, whole, "chunks of {size} bytes");
        }
    }
}
