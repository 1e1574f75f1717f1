//! JSON, small: a parser into one borrowed tree, typed reads off that tree, and a writer.
//!
//! Why not serde_json: its derive-generated visitors and its deserializer, instantiated once
//! per type, were about a third of the Worker's code (see BENCHMARKS.md). Here every type
//! reads and writes through the same few non-generic functions. Strings without escapes are
//! borrowed from the input, so a 10 MB base64 attachment is never copied before it is decoded;
//! objects keep their members in the order given (forms keep their field order, answers write
//! `"ok"` first).

use std::borrow::Cow;
use std::fmt;

/// A JSON value. Parsed ones borrow from the text they came from; built ones borrow from the
/// data they describe. Numbers are kept as their text (parsed: as written; built: formatted),
/// so nothing rounds through a float.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Number(Cow<'a, str>),
    String(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    /// A list of whole numbers from 0 to 255 (a Node `Buffer`'s data, as old Resend SDKs send
    /// attachments), one byte each instead of one [`Value`] each.
    Bytes(Vec<u8>),
    Object(Vec<(Cow<'a, str>, Value<'a>)>),
}

/// Nesting deeper than this is refused: the parser recurses, and workerd's stack is small.
const MAX_DEPTH: usize = 128;
/// More values than this in one text are refused: a body of `[0,0,…]` or `[[],[],…]` within
/// the request limit would otherwise be a tree of millions of nodes, over an isolate's memory.
/// (Lists of bytes count once: see [`Value::Bytes`].)
pub const MAX_VALUES: usize = 500_000;

/// Where and why a text is not JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: &'static str,
    pub line: usize,
    pub column: usize,
    /// The text ended before the value did.
    pub truncated: bool,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at line {} column {}", self.message, self.line, self.column)
    }
}

/// Parses bytes that must be UTF-8 and one JSON value, with nothing but white space around it.
pub fn parse_bytes(bytes: &[u8]) -> Result<Value<'_>, SyntaxError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => Err(Parser { text: "", bytes, at: e.valid_up_to(), depth: 0, values: 0 }.error("invalid UTF-8")),
    }
}

/// Parses one JSON value, with nothing but white space around it.
pub fn parse(text: &str) -> Result<Value<'_>, SyntaxError> {
    let mut parser = Parser { text, bytes: text.as_bytes(), at: 0, depth: 0, values: 0 };
    let value = parser.value().map_err(|why| parser.error(why))?;
    parser.skip_space();
    if parser.at < parser.bytes.len() {
        return Err(parser.error("trailing characters"));
    }
    Ok(value)
}

/// Why the text stopped being JSON; where is the parser's `at` when it stopped. (Line and
/// column are worked out once, in [`parse`], so the recursive readers return a word.)
type Fault = &'static str;

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    depth: usize,
    values: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, message: &'static str) -> SyntaxError {
        let seen = &self.bytes[..self.at.min(self.bytes.len())];
        let line = 1 + seen.iter().filter(|b| **b == b'\n').count();
        let line_start = seen.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        // Columns count characters, not bytes (UTF-8 continuation bytes are not counted).
        let column = 1 + seen[line_start..].iter().filter(|b| (**b & 0xC0) != 0x80).count();
        SyntaxError { message, line, column, truncated: self.at >= self.bytes.len() }
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn value(&mut self) -> Result<Value<'a>, Fault> {
        self.skip_space();
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err("too many values");
        }
        match self.peek() {
            None => Err("EOF while parsing a value"),
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.word("true", Value::Bool(true)),
            Some(b'f') => self.word("false", Value::Bool(false)),
            Some(b'n') => self.word("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err("expected value"),
        }
    }

    fn nested(&mut self, read: fn(&mut Self) -> Result<Value<'a>, Fault>) -> Result<Value<'a>, Fault> {
        if self.depth == MAX_DEPTH {
            return Err("recursion limit exceeded");
        }
        self.depth += 1;
        self.at += 1;
        let value = read(self);
        self.depth -= 1;
        value
    }

    fn word(&mut self, word: &'static str, value: Value<'a>) -> Result<Value<'a>, Fault> {
        for expected in word.bytes() {
            match self.peek() {
                Some(b) if b == expected => self.at += 1,
                None => return Err("EOF while parsing a value"),
                Some(_) => return Err("expected value"),
            }
        }
        Ok(value)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, kept as its text.
    fn number(&mut self) -> Result<Value<'a>, Fault> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits(),
            None => return Err("EOF while parsing a value"),
            Some(_) => return Err("invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.one_or_more_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.one_or_more_digits()?;
        }
        Ok(Value::Number(Cow::Borrowed(&self.text[start..self.at])))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn one_or_more_digits(&mut self) -> Result<(), Fault> {
        match self.peek() {
            Some(b'0'..=b'9') => {
                self.digits();
                Ok(())
            }
            None => Err("EOF while parsing a value"),
            Some(_) => Err("invalid number"),
        }
    }

    /// A string, from its opening quote: borrowed when it has no escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, Fault> {
        self.at += 1; // the opening quote
        let start = self.at;
        loop {
            match self.peek() {
                None => return Err("EOF while parsing a string"),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Cow::Borrowed(&self.text[start..self.at - 1]));
                }
                Some(b'\\') => break,
                Some(0..=0x1F) => return Err("control character in a string"),
                Some(_) => self.at += 1,
            }
        }
        let mut owned = String::from(&self.text[start..self.at]);
        loop {
            match self.peek() {
                None => return Err("EOF while parsing a string"),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Cow::Owned(owned));
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escaped = match self.peek() {
                        None => return Err("EOF while parsing a string"),
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.at += 1;
                            owned.push(self.unicode_escape()?);
                            continue;
                        }
                        Some(_) => return Err("invalid escape"),
                    };
                    self.at += 1;
                    owned.push(escaped);
                }
                Some(0..=0x1F) => return Err("control character in a string"),
                Some(_) => {
                    // Copy up to the next quote, escape or control character in one go.
                    let run = self.bytes[self.at..]
                        .iter()
                        .position(|b| matches!(b, b'"' | b'\\' | 0..=0x1F))
                        .map_or(self.bytes.len(), |n| self.at + n);
                    owned.push_str(&self.text[self.at..run]);
                    self.at = run;
                }
            }
        }
    }

    /// The four hex digits after `\u` (and a second escape for a surrogate pair). A surrogate
    /// out of place is reported where its partner should start (a leading one) or at its own
    /// escape (a trailing one), not past its digits: those may end the text, and no text that
    /// follows could mend it, so it is no `truncated` error.
    fn unicode_escape(&mut self) -> Result<char, Fault> {
        let escape = self.at - 2;
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                let partner = self.at;
                match self.bytes.get(self.at..self.at + 2) {
                    Some(b"\\u") => self.at += 2,
                    // The text ends where the trailing half would start: cut short, not lone.
                    _ if b"\\u".starts_with(&self.bytes[self.at..]) => {
                        self.at = self.bytes.len();
                        return Err("EOF while parsing a string");
                    }
                    _ => return Err("lone leading surrogate in hex escape"),
                }
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    self.at = partner;
                    return Err("lone leading surrogate in hex escape");
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => {
                self.at = escape;
                return Err("lone trailing surrogate in hex escape");
            }
            _ => first,
        };
        char::from_u32(code).ok_or("invalid unicode code point")
    }

    fn hex4(&mut self) -> Result<u32, Fault> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = match self.peek() {
                None => return Err("EOF while parsing a string"),
                Some(b) => (b as char).to_digit(16).ok_or("invalid escape")?,
            };
            code = code * 16 + digit;
            self.at += 1;
        }
        Ok(code)
    }

    fn array(&mut self) -> Result<Value<'a>, Fault> {
        let mut items = Vec::new();
        let mut bytes = Vec::new();
        self.skip_space();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Value::Array(items));
        }
        loop {
            match self.value()? {
                // Whole numbers 0 to 255 stay bytes while every item so far is one.
                Value::Number(n) if items.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()) => {
                    match n.parse::<u8>() {
                        Ok(byte) if n.len() == 1 || !n.starts_with('0') => {
                            self.values -= 1;
                            bytes.push(byte)
                        }
                        _ => {
                            items.extend(bytes.drain(..).map(Value::from));
                            items.push(Value::Number(n))
                        }
                    }
                }
                value => {
                    items.extend(bytes.drain(..).map(Value::from));
                    items.push(value)
                }
            }
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(if items.is_empty() { Value::Bytes(bytes) } else { Value::Array(items) });
                }
                None => return Err("EOF while parsing a list"),
                Some(_) => return Err("expected `,` or `]`"),
            }
        }
    }

    fn object(&mut self) -> Result<Value<'a>, Fault> {
        let mut members = Vec::new();
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_space();
            match self.peek() {
                Some(b'"') => {}
                None => return Err("EOF while parsing an object"),
                Some(_) => return Err("key must be a string"),
            }
            let key = self.string()?;
            self.skip_space();
            match self.peek() {
                Some(b':') => self.at += 1,
                None => return Err("EOF while parsing an object"),
                Some(_) => return Err("expected `:`"),
            }
            members.push((key, self.value()?));
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Value::Object(members));
                }
                None => return Err("EOF while parsing an object"),
                Some(_) => return Err("expected `,` or `}`"),
            }
        }
    }
}

// ---- Reading values ------------------------------------------------------------------------

impl<'a> Value<'a> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    /// A non-negative integer written without fraction or exponent.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(text) => text.parse().ok(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The items of a list (a list of bytes is given as values: see [`Value::items`]).
    pub fn as_array(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The items of any list, bytes included, as values.
    pub fn items(&self) -> Option<Cow<'_, [Value<'a>]>> {
        match self {
            Value::Array(items) => Some(Cow::Borrowed(items)),
            Value::Bytes(bytes) => Some(Cow::Owned(crate::map_vec(bytes, |&b| Value::from(b)))),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&[(Cow<'a, str>, Value<'a>)]> {
        match self {
            Value::Object(members) => Some(members),
            _ => None,
        }
    }

    /// The last member of that name, of an object.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.as_object()?.iter().rev().find(|(name, _)| name == key).map(|(_, value)| value)
    }

    /// An enum variant as written: `"Name"` (no data) or `{"Name": data}`.
    pub fn variant(&self) -> Result<(&str, Option<&Value<'a>>), ShapeError> {
        match self {
            Value::String(name) => Ok((name, None)),
            Value::Object(members) if members.len() == 1 => Ok((&members[0].0, Some(&members[0].1))),
            _ => Err(ShapeError::expected("a variant (\"Name\" or {\"Name\": …})", self)),
        }
    }

    /// An enum variant with data, to write: `{"Name": data}`.
    pub fn tagged(name: &'a str, data: Value<'a>) -> Value<'a> {
        Value::Object(vec![(Cow::Borrowed(name), data)])
    }

    /// What kind of value this is, for messages: "a string", "an object", ….
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) | Value::Bytes(_) => "a list",
            Value::Object(_) => "an object",
        }
    }
}

/// Why a value is not of the shape a reader wanted, with the path to it (`to[1].email`).
/// Boxed, so that every reader's `Result` stays small.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeError(Box<ShapeErrorParts>);

/// What a [`ShapeError`] holds (reached through it by `Deref`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeErrorParts {
    pub path: String,
    pub message: String,
}

impl ShapeError {
    pub fn new(message: impl Into<String>) -> Self {
        ShapeError::from_parts(ShapeErrorParts { path: String::new(), message: message.into() })
    }

    /// An `expected …, found …` error for `value`.
    pub fn expected(what: &str, value: &Value<'_>) -> Self {
        ShapeError::new(format!("expected {what}, found {}", value.kind()))
    }

    /// The same error, one level further out: under the member `name`.
    pub fn at(mut self, name: &str) -> Self {
        self.path = if self.path.is_empty() || self.path.starts_with('[') {
            format!("{name}{}", self.path)
        } else {
            format!("{name}.{}", self.path)
        };
        self
    }

    /// The same error, under the list item `index`.
    pub fn at_index(mut self, index: usize) -> Self {
        self.path = if self.path.is_empty() || self.path.starts_with('[') {
            format!("[{index}]{}", self.path)
        } else {
            format!("[{index}].{}", self.path)
        };
        self
    }
}

boxed_parts!(ShapeError => ShapeErrorParts);

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}`: {}", self.path, self.message)
        }
    }
}

/// A type read off a parsed value.
pub trait FromJson<'a>: Sized {
    fn from_json(value: &Value<'a>) -> Result<Self, ShapeError>;
}

impl<'a> FromJson<'a> for String {
    fn from_json(value: &Value<'a>) -> Result<Self, ShapeError> {
        value.as_str().map(str::to_string).ok_or_else(|| ShapeError::expected("a string", value))
    }
}

impl<'a> FromJson<'a> for Cow<'a, str> {
    fn from_json(value: &Value<'a>) -> Result<Self, ShapeError> {
        match value {
            Value::String(text) => Ok(text.clone()),
            _ => Err(ShapeError::expected("a string", value)),
        }
    }
}

impl<'a> FromJson<'a> for bool {
    fn from_json(value: &Value<'a>) -> Result<Self, ShapeError> {
        value.as_bool().ok_or_else(|| ShapeError::expected("true or false", value))
    }
}

fn unsigned(value: &Value<'_>, max: u64) -> Result<u64, ShapeError> {
    match value.as_u64() {
        Some(n) if n <= max => Ok(n),
        _ => Err(match value {
            Value::Number(text) => ShapeError::new(format!("expected a whole number from 0 to {max}, found {text}")),
            _ => ShapeError::expected("a number", value),
        }),
    }
}

impl<'a> FromJson<'a> for u64 {
    fn from_json(value: &Value<'a>) -> Result<Self, ShapeError> {
        unsigned(value, u64::MAX)
    }
}

impl<'a> FromJson<'a> for usize {
    fn from_json(value: &Value<'a>) -> Result<Self, ShapeError> {
        unsigned(value, usize::MAX as u64).map(|n| n as usize)
    }
}

impl<'a> FromJson<'a> for u32 {
    fn from_json(value: &Value<'a>) -> Result<Self, ShapeError> {
        unsigned(value, u32::MAX.into()).map(|n| n as u32)
    }
}

impl<'a> FromJson<'a> for u16 {
    fn from_json(value: &Value<'a>) -> Result<Self, ShapeError> {
        unsigned(value, u16::MAX.into()).map(|n| n as u16)
    }
}

impl<'a> FromJson<'a> for u8 {
    fn from_json(value: &Value<'a>) -> Result<Self, ShapeError> {
        unsigned(value, u8::MAX.into()).map(|n| n as u8)
    }
}

/// Any value, as it is (to be read later, or by hand).
impl<'a> FromJson<'a> for Value<'a> {
    fn from_json(value: &Value<'a>) -> Result<Self, ShapeError> {
        Ok(value.clone())
    }
}

/// `null` is `None`.
impl<'a, T: FromJson<'a>> FromJson<'a> for Option<T> {
    fn from_json(value: &Value<'a>) -> Result<Self, ShapeError> {
        match value {
            Value::Null => Ok(None),
            _ => T::from_json(value).map(Some),
        }
    }
}

impl<'a, T: FromJson<'a>> FromJson<'a> for Vec<T> {
    fn from_json(value: &Value<'a>) -> Result<Self, ShapeError> {
        let items = value.items().ok_or_else(|| ShapeError::expected("a list", value))?;
        // A loop, not `collect()` into a `Result`: that is std's iterator machinery again for
        // every element type (about 0.6 KB of wasm each, and there are nine).
        let mut read = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            read.push(T::from_json(item).map_err(|e| e.at_index(i))?);
        }
        Ok(read)
    }
}

/// A list of bytes, read without a value per byte.
pub fn bytes(value: &Value<'_>) -> Result<Vec<u8>, ShapeError> {
    match value {
        Value::Bytes(bytes) => Ok(bytes.clone()),
        Value::Array(items) if items.is_empty() => Ok(Vec::new()),
        Value::Array(_) => Err(ShapeError::new("expected a list of whole numbers from 0 to 255")),
        _ => Err(ShapeError::expected("a list of bytes", value)),
    }
}

/// Reads a `T` from JSON text (a syntax error says where; a shape error says which member).
pub fn from_str<'a, T: FromJson<'a>>(text: &'a str) -> Result<T, ReadError> {
    let value = parse(text).map_err(ReadError::Syntax)?;
    T::from_json(&value).map_err(ReadError::Shape)
}

/// [`from_str`] for bytes that must be UTF-8.
pub fn from_bytes<'a, T: FromJson<'a>>(bytes: &'a [u8]) -> Result<T, ReadError> {
    let value = parse_bytes(bytes).map_err(ReadError::Syntax)?;
    T::from_json(&value).map_err(ReadError::Shape)
}

/// Text that is not JSON, or JSON of another shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    Syntax(SyntaxError),
    Shape(ShapeError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Syntax(e) => e.fmt(f),
            ReadError::Shape(e) => e.fmt(f),
        }
    }
}

/// The members of an object, read by name: each may be read once, a name given twice is an
/// error, and [`Fields::finish`] refuses members nobody read (a misspelt field is an error,
/// not a silent default).
pub struct Fields<'v, 'a> {
    members: &'v [(Cow<'a, str>, Value<'a>)],
    read: Vec<bool>,
}

impl<'v, 'a> Fields<'v, 'a> {
    pub fn of(value: &'v Value<'a>) -> Result<Self, ShapeError> {
        let members = value.as_object().ok_or_else(|| ShapeError::expected("an object", value))?;
        Ok(Fields { members, read: vec![false; members.len()] })
    }

    /// Reads an object with `read`, then refuses any member it did not read.
    pub fn read<T>(
        value: &'v Value<'a>,
        read: impl FnOnce(&mut Self) -> Result<T, ShapeError>,
    ) -> Result<T, ShapeError> {
        let mut fields = Fields::of(value)?;
        let read = read(&mut fields)?;
        fields.finish()?;
        Ok(read)
    }

    /// The member `name`, if given (`null` counts as given).
    pub fn value(&mut self, name: &str) -> Result<Option<&'v Value<'a>>, ShapeError> {
        let mut found = None;
        for (i, (key, value)) in self.members.iter().enumerate() {
            if key == name {
                if found.is_some() {
                    return Err(ShapeError::new(format!("duplicate field `{name}`")));
                }
                self.read[i] = true;
                found = Some(value);
            }
        }
        Ok(found)
    }

    /// The member `name` as a `T`; absent is `None` (and so is `null`, where `T` is an Option).
    pub fn optional<T: FromJson<'a>>(&mut self, name: &str) -> Result<Option<T>, ShapeError> {
        match self.value(name)? {
            None | Some(Value::Null) => Ok(None),
            Some(value) => T::from_json(value).map(Some).map_err(|e| e.at(name)),
        }
    }

    /// The member `name` as a `T`; absent or `null` is `T::default()`.
    pub fn or_default<T: FromJson<'a> + Default>(&mut self, name: &str) -> Result<T, ShapeError> {
        self.optional(name).map(Option::unwrap_or_default)
    }

    pub fn required<T: FromJson<'a>>(&mut self, name: &str) -> Result<T, ShapeError> {
        match self.value(name)? {
            None => Err(ShapeError::new(format!("missing field `{name}`"))),
            Some(value) => T::from_json(value).map_err(|e| e.at(name)),
        }
    }

    /// Ok when every member was read.
    pub fn finish(self) -> Result<(), ShapeError> {
        match self.read.iter().position(|read| !read) {
            Some(i) => Err(ShapeError::new(format!("unknown field `{}`", self.members[i].0))),
            None => Ok(()),
        }
    }
}

// ---- Writing values ------------------------------------------------------------------------

/// A type written as JSON: it describes itself as a [`Value`] borrowing from itself.
pub trait ToJson {
    fn to_json(&self) -> Value<'_>;

    /// The JSON text.
    fn encode(&self) -> String {
        self.to_json().encode()
    }
}

impl ToJson for str {
    fn to_json(&self) -> Value<'_> {
        Value::String(Cow::Borrowed(self))
    }
}

impl ToJson for String {
    fn to_json(&self) -> Value<'_> {
        Value::String(Cow::Borrowed(self))
    }
}

impl ToJson for bool {
    fn to_json(&self) -> Value<'_> {
        Value::Bool(*self)
    }
}

macro_rules! unsigned_to_json {
    ($($t:ty),*) => {$(
        impl ToJson for $t {
            fn to_json(&self) -> Value<'_> {
                Value::Number(Cow::Owned(self.to_string()))
            }
        }
        impl<'a> From<$t> for Value<'a> {
            fn from(n: $t) -> Value<'a> {
                Value::Number(Cow::Owned(n.to_string()))
            }
        }
    )*};
}
unsigned_to_json!(u8, u16, u32, u64, usize, i64);

impl<T: ToJson> ToJson for Option<T> {
    fn to_json(&self) -> Value<'_> {
        self.as_ref().map_or(Value::Null, T::to_json)
    }
}

impl<T: ToJson> ToJson for [T] {
    fn to_json(&self) -> Value<'_> {
        let mut items = Vec::with_capacity(self.len());
        for item in self {
            items.push(item.to_json());
        }
        Value::Array(items)
    }
}

impl<T: ToJson> ToJson for Vec<T> {
    fn to_json(&self) -> Value<'_> {
        self.as_slice().to_json()
    }
}

impl ToJson for Value<'_> {
    fn to_json(&self) -> Value<'_> {
        self.clone()
    }
    fn encode(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

impl<'a> From<bool> for Value<'a> {
    fn from(b: bool) -> Value<'a> {
        Value::Bool(b)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(text: &'a str) -> Value<'a> {
        Value::String(Cow::Borrowed(text))
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(text: &'a String) -> Value<'a> {
        Value::String(Cow::Borrowed(text))
    }
}

impl<'a> From<String> for Value<'a> {
    fn from(text: String) -> Value<'a> {
        Value::String(Cow::Owned(text))
    }
}

impl<'a> From<Vec<Value<'a>>> for Value<'a> {
    fn from(items: Vec<Value<'a>>) -> Value<'a> {
        Value::Array(items)
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(value: Option<T>) -> Value<'a> {
        value.map_or(Value::Null, Into::into)
    }
}

/// `object!{"ok": true, "id": &record.id}`: an object with its members in this order. Each
/// value is anything with `Into<Value>` (strings, numbers, booleans, options, values).
#[macro_export]
macro_rules! object {
    ($($key:literal : $value:expr),* $(,)?) => {
        $crate::json::Value::Object(vec![$((::std::borrow::Cow::Borrowed($key), $crate::json::Value::from($value))),*])
    };
}
pub use crate::object;

impl<'a> Value<'a> {
    /// Sets the member `key` of an object (replacing one of that name, else adding it last).
    /// On anything but an object it does nothing.
    pub fn set(&mut self, key: &'a str, value: impl Into<Value<'a>>) {
        if let Value::Object(members) = self {
            let value = value.into();
            match members.iter_mut().find(|(name, _)| name == key) {
                Some((_, old)) => *old = value,
                None => members.push((Cow::Borrowed(key), value)),
            }
        }
    }

    /// The same value, owning all it holds (to outlive what it borrowed from).
    pub fn into_owned(self) -> Value<'static> {
        let owned = |text: Cow<'_, str>| Cow::Owned(text.into_owned());
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Number(text) => Value::Number(owned(text)),
            Value::String(text) => Value::String(owned(text)),
            Value::Array(items) => Value::Array(crate::map_vec(items, Value::into_owned)),
            Value::Bytes(bytes) => Value::Bytes(bytes),
            Value::Object(members) => Value::Object(crate::map_vec(members, |(k, v)| (owned(k), v.into_owned()))),
        }
    }

    /// The JSON text, appended to `out`.
    pub fn write(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(true) => out.push_str("true"),
            Value::Bool(false) => out.push_str("false"),
            Value::Number(text) => out.push_str(text),
            Value::String(text) => write_string(out, text),
            Value::Bytes(bytes) => {
                out.push('[');
                for (i, byte) in bytes.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&byte.to_string());
                }
                out.push(']');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Value::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(out, key);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// A JSON string: quotes, backslashes and control characters escaped, the rest as it is.
fn write_string(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(text.len() + 2);
    out.push('"');
    let mut clean = 0;
    for (i, b) in text.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0C => "\\f",
            0..=0x1F => "",
            _ => continue,
        };
        out.push_str(&text[clean..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xF) as usize] as char);
        } else {
            out.push_str(escape);
        }
        clean = i + 1;
    }
    out.push_str(&text[clean..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> String {
        parse(text).unwrap().encode()
    }

    #[test]
    fn values_parse_and_write_back_compactly_in_order() {
        assert_eq!(
            round_trip(r#" {"b": [1, -2.5e3, true, false, null], "a": {"": "x"}, "c": []} "#),
            r#"{"b":[1,-2.5e3,true,false,null],"a":{"":"x"},"c":[]}"#
        );
    }

    #[test]
    fn strings_without_escapes_are_borrowed_and_escapes_are_decoded() {
        let value = parse(r#"["plain", "a\"b\\c\/d\n\t\u00e9\ud83d\ude00"]"#).unwrap();
        let items = value.as_array().unwrap();
        assert!(matches!(&items[0], Value::String(Cow::Borrowed("plain"))));
        assert_eq!(items[1].as_str(), Some("a\"b\\c/d\n\té😀"));
    }

    #[test]
    fn strings_are_written_with_json_escapes_only_where_needed() {
        let text = "q\"b\\ n\n r\r t\t \u{1} \u{8}\u{c} é 😀 </script>";
        let written = Value::from(text).encode();
        assert_eq!(written, r#""q\"b\\ n\n r\r t\t \u0001 \b\f é 😀 </script>""#);
        assert_eq!(parse(&written).unwrap().as_str(), Some(text));
    }

    #[test]
    fn what_is_not_json_is_refused_with_where() {
        let cases: &[(&str, &str, bool)] = &[
            ("", "EOF while parsing a value at line 1 column 1", true),
            ("{\"a\":1,}", "key must be a string at line 1 column 8", false),
            ("{\"a\" 1}", "expected `:` at line 1 column 6", false),
            ("[1 2]", "expected `,` or `]` at line 1 column 4", false),
            ("{\n  \"to\": \"x\",\n  \"é\": tru", "EOF while parsing a value at line 3 column 11", true),
            ("\"abc", "EOF while parsing a string at line 1 column 5", true),
            ("01", "trailing characters at line 1 column 2", false),
            ("1.", "EOF while parsing a value at line 1 column 3", true),
            ("-x", "invalid number at line 1 column 2", false),
            ("\"a\u{1}\"", "control character in a string at line 1 column 3", false),
            (r#""\x""#, "invalid escape at line 1 column 3", false),
            (r#""\ud800""#, "lone leading surrogate in hex escape at line 1 column 8", false),
            (r#""\udc00""#, "lone trailing surrogate in hex escape at line 1 column 2", false),
            (r#""\ud800\u0041""#, "lone leading surrogate in hex escape at line 1 column 8", false),
            ("nul", "EOF while parsing a value at line 1 column 4", true),
            ("{} {}", "trailing characters at line 1 column 4", false),
            ("'a'", "expected value at line 1 column 1", false),
        ];
        for (text, message, truncated) in cases {
            let error = parse(text).unwrap_err();
            assert_eq!((error.to_string().as_str(), error.truncated), (*message, *truncated), "{text:?}");
        }
        assert_eq!(parse_bytes(b"[\"\xff\"]").unwrap_err().to_string(), "invalid UTF-8 at line 1 column 3");
    }

    #[test]
    fn a_text_cut_inside_a_surrogate_pair_is_truncated() {
        // As serde_json has it (an Eof error): the trailing half may still have been coming.
        for text in [r#""\ud83d"#, r#""\ud83d\"#, r#""\ud83d\u"#, r#""\ud83d\ude"#] {
            let error = parse(text).unwrap_err();
            assert_eq!((error.message, error.truncated), ("EOF while parsing a string", true), "{text:?}");
            assert_eq!(error.column, text.len() + 1, "{text:?}");
        }
        // Followed by anything else, it is lone.
        let error = parse(r#""\ud83d\n""#).unwrap_err();
        assert_eq!((error.message, error.truncated), ("lone leading surrogate in hex escape", false));
    }

    #[test]
    fn a_surrogate_out_of_place_at_the_end_is_not_truncated() {
        // Nothing after these could make them valid (serde_json: a syntax error, not Eof).
        let cases = [
            (r#"["", "\udc02"#, "lone trailing surrogate in hex escape at line 1 column 7"),
            (r#""\ud800\u0041"#, "lone leading surrogate in hex escape at line 1 column 8"),
            (r#""\ud800\ud800"#, "lone leading surrogate in hex escape at line 1 column 8"),
        ];
        for (text, message) in cases {
            let error = parse(text).unwrap_err();
            assert_eq!((error.to_string().as_str(), error.truncated), (message, false), "{text:?}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&deep).is_ok());
        let deeper = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(&deeper).unwrap_err().message, "recursion limit exceeded");
        let hostile = "[".repeat(1_000_000);
        assert_eq!(parse(&hostile).unwrap_err().message, "recursion limit exceeded");
    }

    #[test]
    fn fields_are_read_once_by_name_and_unknown_or_repeated_ones_refused() {
        let value = parse(r#"{"name": "x", "count": 3, "none": null}"#).unwrap();
        let mut fields = Fields::of(&value).unwrap();
        assert_eq!(fields.required::<String>("name").unwrap(), "x");
        assert_eq!(fields.optional::<u32>("count").unwrap(), Some(3));
        assert_eq!(fields.optional::<String>("none").unwrap(), None);
        assert_eq!(fields.optional::<String>("absent").unwrap(), None);
        assert!(fields.finish().is_ok());

        let value = parse(r#"{"name": "x", "nmae": "y"}"#).unwrap();
        let mut fields = Fields::of(&value).unwrap();
        fields.required::<String>("name").unwrap();
        assert_eq!(fields.finish().unwrap_err().to_string(), "unknown field `nmae`");

        let value = parse(r#"{"name": "x", "name": "y"}"#).unwrap();
        let error = Fields::of(&value).unwrap().required::<String>("name").unwrap_err();
        assert_eq!(error.to_string(), "duplicate field `name`");

        let value = parse(r#"{"to": [{"email": 5}]}"#).unwrap();
        let error = Fields::of(&value)
            .unwrap()
            .required::<Vec<Value>>("to")
            .and_then(|to| {
                Fields::of(&to[0]).and_then(|mut f| f.required::<String>("email")).map_err(|e| e.at_index(0).at("to"))
            })
            .unwrap_err();
        assert_eq!(error.to_string(), "`to[0].email`: expected a string, found a number");
        assert_eq!(Fields::of(&Value::Null).err().unwrap().to_string(), "expected an object, found null");
    }

    #[test]
    fn lists_of_bytes_are_kept_compact_and_read_like_any_list() {
        let value = parse("[0, 7, 255]").unwrap();
        assert_eq!(value, Value::Bytes(vec![0, 7, 255]));
        assert_eq!(value.encode(), "[0,7,255]");
        assert_eq!(from_str::<Vec<u16>>("[0, 7, 255]"), Ok(vec![0, 7, 255]));
        assert_eq!(bytes(&value), Ok(vec![0, 7, 255]));
        for mixed in ["[1, 256]", "[1, -1]", "[1, 1.5]", "[1, 01]", "[1, \"a\"]", "[\"a\", 1]", "[1, 1e2]"] {
            let value = parse(mixed).unwrap_or_else(|e| Value::String(e.to_string().into()));
            assert!(matches!(value, Value::Array(_) | Value::String(_)), "{mixed}: {value:?}");
        }
        assert_eq!(parse("[1, 256]").unwrap().encode(), "[1,256]");
        assert!(bytes(&parse("[1, 256]").unwrap()).is_err());
        // A long list of bytes is one value; a long list of anything else is many.
        let many = format!("[{}0]", "0,".repeat(MAX_VALUES * 2));
        assert!(matches!(parse(&many), Ok(Value::Bytes(b)) if b.len() == MAX_VALUES * 2 + 1));
        let nulls = format!("[{}null]", "null,".repeat(MAX_VALUES));
        assert_eq!(parse(&nulls).unwrap_err().message, "too many values");
    }

    #[test]
    fn numbers_are_read_in_range_only() {
        assert_eq!(from_str::<u8>("255"), Ok(255));
        assert!(from_str::<u8>("256").is_err());
        assert!(from_str::<u32>("-1").is_err());
        assert!(from_str::<u32>("1.5").is_err());
        assert_eq!(from_str::<u64>("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(from_str::<Vec<u16>>("[1,2]"), Ok(vec![1, 2]));
    }

    #[test]
    fn objects_are_built_in_order_and_members_set_in_place() {
        let id = String::from("abc");
        let mut value = object! {"ok": true, "id": &id, "n": 5u32, "none": None::<&str>};
        value.set("n", 6u64);
        value.set("extra", Value::from(vec![Value::from("x")]));
        assert_eq!(value.encode(), r#"{"ok":true,"id":"abc","n":6,"none":null,"extra":["x"]}"#);
        assert_eq!(value.get("id").and_then(Value::as_str), Some("abc"));
    }
}
