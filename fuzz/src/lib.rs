//! Helpers shared by the fuzz targets: cutting one input into several
//! values, and feeding a stream in the pieces a network would deliver.

/// The input's parts between `sep` bytes, at most `n` of them (the last one
/// keeps the rest, separators included); missing parts are `None`.
pub fn parts(data: &[u8], sep: u8, n: usize) -> Vec<Option<&[u8]>> {
    let mut out: Vec<Option<&[u8]>> = data.splitn(n, |&b| b == sep).map(Some).collect();
    out.resize(n, None);
    out
}

/// Splits an input into (chunk sizes, stream): the first byte says how many
/// of the next bytes are chunk sizes (`% 16`; each `1..=256`, used in turn);
/// the rest is the stream. No size bytes: the stream in one piece.
pub fn split_plan(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&k, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let k = usize::from(k % 16).min(rest.len());
    let (sizes, stream) = rest.split_at(k);
    (sizes.iter().map(|&b| usize::from(b) + 1).collect(), stream)
}

/// `stream` in the pieces `sizes` gives (cycled); one piece when `sizes`
/// is empty.
pub fn chunks<'a>(stream: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    if sizes.is_empty() {
        return vec![stream];
    }
    let mut out = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
        i += 1;
    }
    out
}

/// `%XX`-decodes like a reference (allocating, no length bound), with `+`
/// as a space; `None` when an escape is malformed.
pub fn percent_decode_ref(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hex = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
                if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}
