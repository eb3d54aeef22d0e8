//! A request body read under a size limit: refused by its declared `Content-Length` before a byte
//! is read, and cut off while streaming as soon as it passes the limit, so an oversize body never
//! sits whole in the Worker's memory. The Worker feeds it the chunks of the body stream.

use crate::core::error::{Error, ErrorCode};

/// The bytes of a body read so far, at most `max`.
#[derive(Debug)]
pub struct CappedBody {
    max: usize,
    bytes: Vec<u8>,
}

impl CappedBody {
    /// Starts reading a body of at most `max` bytes. A declared `Content-Length` over `max` is
    /// 413 at once; one that is not a whole number is 400. Without one (a chunked body) only the
    /// streaming cap applies.
    pub fn new(max: usize, content_length: Option<&str>) -> Result<CappedBody, Error> {
        let declared = match content_length.map(str::trim) {
            None => None,
            Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                // Too many digits for a u64 is over any limit too.
                Some(v.parse::<u64>().unwrap_or(u64::MAX))
            }
            Some(v) => {
                let shown: String = v.chars().take(40).collect();
                return Err(Error::new(ErrorCode::BadRequest, format!("bad Content-Length {shown:?}")));
            }
        };
        if declared.is_some_and(|n| n > max as u64) {
            return Err(too_large(max));
        }
        let capacity = declared.map_or(0, |n| n as usize);
        Ok(CappedBody { max, bytes: Vec::with_capacity(capacity) })
    }

    /// Adds the next chunk; 413 as soon as the body passes the limit (the rest is not read).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), Error> {
        if self.bytes.len().saturating_add(chunk.len()) > self.max {
            return Err(too_large(self.max));
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    /// The whole body as text; 400 when it is not UTF-8 (every body we take is JSON).
    pub fn finish(self) -> Result<String, Error> {
        String::from_utf8(self.bytes).map_err(|_| Error::new(ErrorCode::BadRequest, "body is not UTF-8"))
    }
}

fn too_large(max: usize) -> Error {
    Error::new(ErrorCode::TooLarge, format!("body is over {max} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_length_over_the_limit_is_refused_before_reading() {
        assert_eq!(CappedBody::new(10, Some("11")).unwrap_err().code, ErrorCode::TooLarge);
        assert_eq!(
            CappedBody::new(10, Some("99999999999999999999999")).unwrap_err().code,
            ErrorCode::TooLarge
        );
        assert!(CappedBody::new(10, Some("10")).is_ok());
        assert!(CappedBody::new(10, Some(" 0 ")).is_ok());
        assert!(CappedBody::new(10, None).is_ok());
    }

    #[test]
    fn bad_content_length_is_400() {
        for v in ["", "-1", "1e3", "10, 10", "ten"] {
            assert_eq!(CappedBody::new(10, Some(v)).unwrap_err().code, ErrorCode::BadRequest, "{v:?}");
        }
    }

    #[test]
    fn streaming_stops_at_the_limit() {
        let mut body = CappedBody::new(10, None).unwrap();
        body.push(b"hello").unwrap();
        body.push(b"world").unwrap();
        assert_eq!(body.push(b"!").unwrap_err().code, ErrorCode::TooLarge);
        let mut body = CappedBody::new(4, None).unwrap();
        assert_eq!(body.push(b"hello").unwrap_err().code, ErrorCode::TooLarge);
    }

    #[test]
    fn the_body_is_utf8_text() {
        let mut body = CappedBody::new(100, Some("7")).unwrap();
        body.push("{\"a\":".as_bytes()).unwrap();
        body.push("1}".as_bytes()).unwrap();
        assert_eq!(body.finish(), Ok("{\"a\":1}".to_owned()));
        let mut bad = CappedBody::new(100, None).unwrap();
        bad.push(&[0xff, 0xfe]).unwrap();
        assert_eq!(bad.finish().unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(CappedBody::new(100, None).unwrap().finish(), Ok(String::new()));
    }
}
